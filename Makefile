# Meshsmith: one entry point. `make setup` is idempotent; demo, test and extension run it first.
SHELL := /bin/bash
# The first interpreter of the wanted version that actually runs (pyenv shims may not).
find_python = $(shell for p in python$(1) $$(pyenv root 2>/dev/null)/versions/$(1).*/bin/python3 \
	$(HOME)/.pyenv/versions/$(1).*/bin/python3; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(1)".split("."))))' 2>/dev/null \
	&& { command -v "$$p"; break; }; done)
PYTHON311 ?= $(call find_python,3.11)
PYTHON313 ?= $(call find_python,3.13)
VENV := .venv
VENV52 := .venv-blender52

.PHONY: setup demo test test-main test-blender52 extension dist field-test train-data train train-data-mesh-lm train-mesh-lm clean

setup: $(VENV)/.installed $(VENV52)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml setup.py backend/mesh/_native.c
	@test -n "$(PYTHON311)" || { echo "Python 3.11 not found; set PYTHON311=/path/to/python3.11"; exit 1; }
	test -x $(VENV)/bin/python || $(PYTHON311) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV52)/.installed: requirements-blender52.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 not found; set PYTHON313=/path/to/python3.13"; exit 1; }
	test -x $(VENV52)/bin/python || $(PYTHON313) -m venv $(VENV52)
	$(VENV52)/bin/python -m pip install --quiet --upgrade pip
	$(VENV52)/bin/python -m pip install --quiet -r requirements-blender52.txt
	touch $@

demo: setup
	$(VENV)/bin/python scripts/demo.py --out out

extension: setup
	$(VENV)/bin/python scripts/build_extension.py

# The self-contained zips an artist installs: one per platform and Blender Python, into dist/
# (wheels downloaded once into build/wheels/). `make test` then also checks them.
dist: setup
	$(VENV)/bin/python scripts/build_extension.py --dist

# Everything on Blender 4.2 / Python 3.11, then the add-on again on Blender 5.2 / Python 3.13.
test: setup test-main test-blender52

test-main:
	MESHSMITH_EXPECT_BPY=4.2 MESHSMITH_EXPECT_NATIVE=1 $(VENV)/bin/python -m pytest -q

test-blender52:
	MESHSMITH_EXPECT_BPY=5.2 MESHSMITH_BACKEND_PYTHON=$(CURDIR)/$(VENV)/bin/python \
		$(VENV52)/bin/python -m pytest -q tests/addon

# Every Generate mode on every mesh of MESHES, through the installed add-on, in both Blender versions.
MESHES ?= assets
field-test: setup
	status=0; \
	$(VENV)/bin/python scripts/field_test.py $(MESHES) --million --made --out out/field-4.2 || status=1; \
	MESHSMITH_BACKEND_PYTHON=$(CURDIR)/$(VENV)/bin/python $(VENV52)/bin/python scripts/field_test.py $(MESHES) \
		--million --made --out out/field-5.2 || status=1; \
	exit $$status

# The views-to-mesh training set (about 70 minutes on 2 cores, resumable): Debian's Sweet Home 3D
# furniture and 240 procedural shapes -> corpora with licences and splits -> six views per asset
# -> SDF samples and packs.
DATA ?= data
FURNITURE_DEB := $(DATA)/debs/sweethome3d-furniture_1.8-1_all.deb
train-data: setup
	mkdir -p $(DATA)/debs
	test -f $(FURNITURE_DEB) || (cd $(DATA)/debs && apt-get download sweethome3d-furniture=1.8-1)
	$(VENV)/bin/python -m training.data furniture --deb $(FURNITURE_DEB) --out $(DATA)/furniture
	$(VENV)/bin/python -m training.data views $(DATA)/furniture --out $(DATA)/furniture-views --workers 2
	$(VENV)/bin/python -m training.data samples $(DATA)/furniture --views $(DATA)/furniture-views \
		--out $(DATA)/furniture-train --workers 2
	$(VENV)/bin/python -m training.data shapes --count 240 --out $(DATA)/shapes
	$(VENV)/bin/python -m training.data views $(DATA)/shapes --out $(DATA)/shapes-views --workers 2
	$(VENV)/bin/python -m training.data samples $(DATA)/shapes --views $(DATA)/shapes-views \
		--out $(DATA)/shapes-train --workers 2

# Train (or resume) the shipped CPU model for at most MINUTES minutes; run again to go on.
MINUTES ?= 60
RUN ?= runs/views-cpu
train: setup
	test -d $(RUN)/ckpt || ! test -f training/checkpoints/views-cpu/model.safetensors || { mkdir -p $(RUN) && cp -r training/checkpoints/views-cpu $(RUN)/ckpt; }
	$(VENV)/bin/python -m training.train --config training/configs/views_cpu.json \
		--data=$(DATA)/furniture-train,$(DATA)/shapes-train --out=$(RUN) --max_minutes=$(MINUTES)

# The mesh model's set (about 30 minutes on 2 cores, resumable): the furniture corpus's meshes at
# <= 800 faces (the artist pipeline reduces larger ones), tokenized, with 4,096 points each.
train-data-mesh-lm: setup
	test -f $(DATA)/furniture/manifest.jsonl || $(MAKE) train-data
	$(VENV)/bin/python -m training.data meshlm $(DATA)/furniture --out $(DATA)/furniture-meshlm --max-faces 800 \
		--workers 2

# Train (or resume) the mesh model for at most MINUTES minutes; run again to go on.
MESH_LM_RUN ?= runs/mesh-lm-cpu
train-mesh-lm: setup
	test -d $(MESH_LM_RUN)/ckpt || ! test -f training/checkpoints/mesh-lm-cpu/model.safetensors || \
		{ mkdir -p $(MESH_LM_RUN) && cp -r training/checkpoints/mesh-lm-cpu $(MESH_LM_RUN)/ckpt; }
	$(VENV)/bin/python -m training.train --config training/configs/mesh_lm_cpu.json \
		--data=$(DATA)/furniture-meshlm --out=$(MESH_LM_RUN) --max_minutes=$(MINUTES)

clean:
	rm -rf out dist .pytest_cache
