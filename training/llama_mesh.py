"""LLaMA-Mesh (Wang et al. 2024): a fine-tuned Llama 3.1 8B that writes meshes as OBJ text.

Its format: vertex coordinates quantized to 64 integer levels (``v 12 40 3``), triangles with
1-based indices (``f 1 2 3``), at most about 500 faces. This module holds everything Meshsmith
needs to run it, with no model at import time:

- :class:`ObjStream`: a streaming, forgiving parser of what such a model writes (prose, code
  fences, garbage lines, indices out of range, repeated or degenerate faces are counted and
  skipped, never guessed);
- :func:`obj_text`: a mesh in the same format (for tests and for prompts that show a mesh);
- :class:`ObjGrammar`: a character automaton of the format; :class:`TokenMask` lifts it to a
  model's token strings so sampling can only write valid lines (on by default; it also keeps a
  small or random model on the format);
- :func:`find_model` and two runners picked from what the user has: a GGUF file (llama.cpp
  through ``llama-cpp-python``, CPU, minutes per mesh) or a Hugging Face folder / hub id
  (``transformers``, a GPU if there is one). Nothing is ever downloaded here: a hub id must
  already be in the Hugging Face cache (the message says how to fetch it).

Runners stream: ``generate(prompt, ...)`` calls ``on_text(chunk)`` as the text arrives, which
is where the caller parses, reports progress and cancels (an exception raised there stops the
model between two tokens).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

#: Integer levels per axis in LLaMA-Mesh's OBJ text.
LEVELS = 64
#: LLaMA-Mesh's training meshes have at most this many faces.
MAX_FACES = 500
#: Hub repositories of the published weights (Llama 3.1 licence); fetched by the user, never here.
HUB_TRANSFORMERS = "Zhengyi/LLaMA-Mesh"
HUB_GGUF = "bartowski/LLaMA-Mesh-GGUF"
DEFAULT_GGUF_FILE = "LLaMA-Mesh-Q4_K_M.gguf"
#: Control tokens that end a turn (Llama 3's and the common others).
END_PIECES = {"<|eot_id|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<|endoftext|>"}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_VERTEX = re.compile(rf"^v\s+({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})(?:\s+{_NUMBER})*\s*$")
_FACE_INDEX = re.compile(r"^([-+]?\d+)(?:/[-+]?\d*){0,2}$")


class ModelNotFound(ValueError):
    """No LLaMA-Mesh weights where the spec points; the message says how to get them."""


@dataclass
class ObjStream:
    """Parses OBJ text as it streams in: :meth:`feed` chunks, :meth:`close` at the end.

    Vertices are kept as written (the model's integer levels, floats accepted); faces as
    0-based vertex indices. A face that names a vertex not written (yet) waits: it is kept if
    that vertex comes later, and counted under ``problems['index out of range']`` at
    :meth:`close` otherwise. Everything else that is not a vertex or a face is counted, never
    guessed at.
    """

    levels: int = LEVELS
    vertices: list[tuple[float, float, float]] = field(default_factory=list)
    faces: list[tuple[int, ...]] = field(default_factory=list)
    problems: dict[str, int] = field(default_factory=dict)
    _pending: list[tuple[int, ...]] = field(default_factory=list)
    _seen: set = field(default_factory=set)
    _line: str = ""
    _closed: bool = False

    def feed(self, text: str) -> int:
        """Parse the complete lines in ``text`` (and before it); returns how many faces were added."""
        before = len(self.faces)
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            self._parse(line)
        return len(self.faces) - before

    def close(self) -> None:
        """Parse the last line and settle faces that still wait for vertices."""
        if self._closed:
            return
        self._parse(self._line)
        self._line = ""
        self._closed = True
        self._settle()
        if self._pending:
            self._count("index out of range", len(self._pending))
            self._pending = []

    @property
    def face_count(self) -> int:
        return len(self.faces)

    def _count(self, problem: str, n: int = 1) -> None:
        self.problems[problem] = self.problems.get(problem, 0) + n

    def _parse(self, raw: str) -> None:
        line = raw.strip()
        if not line or line.startswith(("#", "```", "o ", "g ", "s ", "usemtl", "mtllib")):
            return
        if line.startswith("v "):
            match = _VERTEX.match(line)
            if match is None:
                self._count("unreadable vertex line")
                return
            xyz = tuple(float(v) for v in match.groups())
            if not all(np.isfinite(xyz)):
                self._count("unreadable vertex line")
                return
            self.vertices.append(xyz)
            self._settle()
        elif line.startswith("f "):
            parts = line.split()[1:]
            indices = []
            for part in parts:
                match = _FACE_INDEX.match(part)
                if match is None:
                    self._count("unreadable face line")
                    return
                index = int(match.group(1))
                # OBJ: 1-based; negative counts back from the last vertex written so far.
                indices.append(index - 1 if index > 0 else len(self.vertices) + index if index < 0 else -1)
            if len(indices) < 3 or min(indices) < 0:
                self._count("unreadable face line" if len(indices) < 3 else "index out of range")
                return
            self._add_face(tuple(indices))
        elif line[:2] in ("vt", "vn"):
            return
        else:
            self._count("other text")

    def _add_face(self, face: tuple[int, ...]) -> None:
        if len(set(face)) < len(face):
            self._count("repeated vertex in a face")
            return
        if max(face) >= len(self.vertices):
            self._pending.append(face)
            return
        key = tuple(sorted(face))
        if key in self._seen:
            self._count("duplicate face")
            return
        self._seen.add(key)
        self.faces.append(face)

    def _settle(self) -> None:
        if self._pending:
            waiting, self._pending = self._pending, []
            for face in waiting:
                self._add_face(face)

    def mesh(self, *, triangulate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vertices in [-1, 1] from the integer levels, faces, face sizes) of what was parsed so far,
        unused vertices dropped. Coordinates outside the levels are clamped (counted at :meth:`close`)."""
        if not self.faces:
            return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
        levels = np.asarray(self.vertices, dtype=np.float64)
        outside = int(np.any((levels < 0) | (levels > self.levels - 1), axis=1).sum())
        if outside and self._closed:
            self.problems["coordinate outside the levels (clamped)"] = outside
        vertices = np.clip(levels, 0, self.levels - 1) * (2.0 / (self.levels - 1)) - 1.0
        sizes = np.array([len(f) for f in self.faces], dtype=np.int64)
        if triangulate:   # fans: faces of more than three corners become triangles
            tris = [(f[0], f[i], f[i + 1]) for f in self.faces for i in range(1, len(f) - 1)]
            flat, sizes = np.asarray(tris, dtype=np.int64), np.full(len(tris), 3, dtype=np.int64)
        else:
            flat = np.concatenate([np.asarray(f, dtype=np.int64) for f in self.faces])
        used = np.unique(flat)
        remap = np.full(len(vertices), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return vertices[used], remap[flat], sizes


def obj_text(vertices: np.ndarray, faces: np.ndarray, levels: int = LEVELS) -> str:
    """A mesh as LLaMA-Mesh writes one: coordinates scaled into its box and rounded to ``levels``
    integer levels (merged vertices collapse; faces that collapse are dropped), 1-based triangles."""
    vertices = np.asarray(vertices, dtype=np.float64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    scale = (high - low).max() or 1.0
    centred = (vertices - (low + high) / 2) / scale * 2          # longest side spans [-1, 1]
    q = np.clip(np.rint((centred + 1) / 2 * (levels - 1)), 0, levels - 1).astype(np.int64)
    keys, index = np.unique(q, axis=0, return_inverse=True)
    tris = index.reshape(-1)[np.asarray(faces, dtype=np.int64)]
    tris = tris[(tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])]
    lines = [f"v {x} {y} {z}" for x, y, z in keys]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in tris]
    return "\n".join(lines) + "\n"


class ObjGrammar:
    """The OBJ text a mesh model may write, as a character automaton.

    Lines are ``v A B C`` (integers ``0 .. levels - 1``, no leading zeros) or ``f I J K`` (1-based
    indices of three different vertices already written, so a face line needs three vertices
    before it), each
    ended by a newline. The text may end only at the start of a line, after at least one face.
    A state is a small tuple that counts the vertices so far; :meth:`step` returns the next
    state, or None when the character is not allowed there.
    """

    START = ("line", 0, False)

    def __init__(self, levels: int = LEVELS):
        self.levels = levels
        self.level_digits = len(str(levels - 1))

    def step(self, state: tuple, char: str):
        kind = state[0]
        if kind == "line":
            _, count, has_face = state
            if char == "v" or (char == "f" and count >= 3):
                return ("tag", char, count, has_face)
            return None
        if kind == "tag":
            return ("num", state[1], 0, "", (), state[2], state[3]) if char == " " else None
        _, what, position, digits, used, count, has_face = state
        if "0" <= char <= "9":
            grown = digits + char
            if digits == "0" or (what == "f" and grown == "0"):
                return None                          # no leading zeros; indices start at 1
            limit = self.levels - 1 if what == "v" else count
            if int(grown) > limit:
                return None
            return ("num", what, position, grown, used, count, has_face)
        if not digits or char not in " \n":
            return None
        if what == "f":
            if int(digits) in used:
                return None                          # a face names three different vertices
            used = used + (int(digits),)
        if char == " " and position < 2:
            return ("num", what, position + 1, "", used, count, has_face)
        if char == "\n" and position == 2:
            return ("line", count + 1, has_face) if what == "v" else ("line", count, True)
        return None

    def walk(self, state: tuple, text: str):
        """The state after ``text``, or None when it does not fit or leads where no line can end."""
        for char in text:
            state = self.step(state, char)
            if state is None:
                return None
        return state if self.live(state) else None

    @staticmethod
    def live(state: tuple) -> bool:
        """Whether some text continues ``state`` to a line's end (a face index may have run out of
        unused vertices that start with its digits)."""
        if state[0] != "num" or state[1] != "f" or not state[3]:
            return True
        _, _, _, digits, used, count, _ = state
        low = int(digits)
        for extra in range(0, len(str(count)) - len(digits) + 1):
            start, stop = low * 10 ** extra, min((low + 1) * 10 ** extra - 1, count)
            if start <= stop and (stop - start + 1) > sum(start <= u <= stop for u in used):
                return True
        return False

    @staticmethod
    def may_end(state: tuple) -> bool:
        return state[0] == "line" and state[2]


class TokenMask:
    """:class:`ObjGrammar` over a model's vocabulary: which tokens may come next in each state.

    ``pieces[i]`` is token ``i``'s text (None for tokens that never fit: control tokens). Masks are
    built per state on first use and kept; only tokens whose first character fits are walked (in a
    Llama 3 vocabulary of 128k tokens, a few hundred start with a digit or ``v``).
    """

    def __init__(self, pieces: list[str | None], end_tokens: list[int], grammar: ObjGrammar | None = None):
        self.grammar = grammar or ObjGrammar()
        self.pieces = pieces
        self.end_tokens = [t for t in end_tokens if 0 <= t < len(pieces)]
        self._allowed: dict[tuple, np.ndarray] = {}
        by_first: dict[str, list[int]] = {}
        for i, piece in enumerate(pieces):
            if piece:
                by_first.setdefault(piece[0], []).append(i)
        self._by_first = by_first

    def allowed(self, state: tuple) -> np.ndarray:
        """Token ids allowed in ``state`` (sorted)."""
        if state not in self._allowed:
            if len(self._allowed) > 4096:        # states count vertices: keep the memo bounded
                self._allowed.clear()
            ids = []
            for first, candidates in self._by_first.items():
                if self.grammar.step(state, first) is None:
                    continue
                ids.extend(i for i in candidates if self.grammar.walk(state, self.pieces[i]) is not None)
            if self.grammar.may_end(state):
                ids.extend(self.end_tokens)
            if not ids:
                raise ValueError(f"no token of this vocabulary continues the OBJ text in state {state}")
            self._allowed[state] = np.asarray(sorted(ids), dtype=np.int64)
        return self._allowed[state]

    def advance(self, state: tuple, token: int) -> tuple:
        if token in self.end_tokens:
            return state
        piece = self.pieces[token]
        nxt = self.grammar.walk(state, piece) if piece else None
        if nxt is None:
            raise ValueError(f"token {token} ({piece!r}) does not fit the OBJ grammar here")
        return nxt


def prompt_for(text: str) -> str:
    """The user's words as LLaMA-Mesh's instruction (its training prompts read "Create a 3D model of ...")."""
    text = " ".join(text.split())
    if not text:
        raise ValueError("the prompt is empty: describe the object, e.g. 'a wooden chair'")
    if re.search(r"\b(3d|mesh|obj)\b", text, re.IGNORECASE):
        return text
    return f"Create a 3D model of {text.rstrip('.')}."


# ----------------------------------------------------------------------------------------------
# Finding the weights and running them


@dataclass(frozen=True)
class ModelSpec:
    """Where LLaMA-Mesh-format weights are: ``kind`` is ``gguf`` (a file) or ``transformers`` (a folder)."""

    kind: str
    path: Path


def find_model(spec: str, gguf_file: str | None = None) -> ModelSpec:
    """Resolve ``spec``: a ``.gguf`` file, a transformers folder (``config.json``), or a hub id
    already in the Hugging Face cache (a GGUF repo: ``gguf_file`` or the Q4_K_M build)."""
    text = os.path.expanduser(str(spec or "").strip())
    if not text:
        raise ModelNotFound(_how_to_get())
    path = Path(text)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelNotFound(f"{path} is not a .gguf file; name a GGUF file or a transformers folder")
        return ModelSpec("gguf", path)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if (path / "config.json").is_file():
            return ModelSpec("transformers", path)
        if ggufs:
            chosen = [g for g in ggufs if gguf_file and g.name == gguf_file] or ggufs
            return ModelSpec("gguf", chosen[0])
        raise ModelNotFound(f"{path} holds neither a .gguf file nor a transformers model (config.json)")
    if text.count("/") != 1 or text.startswith((".", "/")):
        raise ModelNotFound(f"{text!r}: no such file or folder, and not a hub repo id (owner/name)")
    return _from_cache(text, gguf_file)


def _from_cache(repo: str, gguf_file: str | None) -> ModelSpec:
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        if "gguf" in repo.lower():
            name = gguf_file or DEFAULT_GGUF_FILE
            return ModelSpec("gguf", Path(hf_hub_download(repo, name, local_files_only=True)))
        return ModelSpec("transformers", Path(snapshot_download(repo, local_files_only=True)))
    except Exception:
        raise ModelNotFound(f"{repo!r} is not in this machine's Hugging Face cache. " + _how_to_get()) from None


def _how_to_get() -> str:
    return ("LLaMA-Mesh's weights are several GB and never downloaded by a job: fetch them once, e.g. "
            f"`huggingface-cli download {HUB_GGUF} {DEFAULT_GGUF_FILE}` (CPU, about 5 GB) or "
            f"`huggingface-cli download {HUB_TRANSFORMERS}` (GPU, 16 GB), then name the file, the folder or the "
            "repo id as the model.")


@dataclass
class Generation:
    """What a runner reports at the end."""

    text: str
    tokens: int
    seconds: float
    stopped: str            # "end" (the model ended), "max_tokens", "max_faces"


class _Runner:
    kind = "?"

    def generate(self, prompt: str, *, max_tokens: int, temperature: float, top_p: float, seed: int,
                 constrained: bool, on_text: Callable[[str], bool]) -> Generation:
        """Write a mesh for ``prompt``; ``on_text(chunk)`` returns True to stop (face budget)."""
        raise NotImplementedError


def _sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = (logits - logits.max()) / temperature
    p = np.exp(z)
    p /= p.sum()
    order = np.argsort(-p)
    keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p) + 1)]
    q = p[keep] / p[keep].sum()
    return int(keep[rng.choice(len(keep), p=q)])


class GGUFRunner(_Runner):
    """A GGUF build through llama.cpp (``llama-cpp-python``), token by token on the CPU."""

    kind = "gguf"

    def __init__(self, path: Path, *, context: int = 8192, threads: int | None = None):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelNotFound("running a GGUF model needs llama-cpp-python (pip install llama-cpp-python)") from None
        self.llm = Llama(model_path=str(path), n_ctx=context, n_threads=threads or max(1, os.cpu_count() or 1),
                         verbose=False, logits_all=False)
        self._mask: TokenMask | None = None

    def _pieces(self) -> TokenMask:
        if self._mask is None:
            n = self.llm.n_vocab()
            pieces = []
            for i in range(n):
                try:
                    pieces.append(self.llm.detokenize([i], special=False).decode("utf-8"))
                except (UnicodeDecodeError, TypeError):
                    pieces.append(None)
            ends = {self.llm.token_eos()}
            for i in range(n):
                if pieces[i] == "" and self.llm.detokenize([i], special=True).decode("utf-8", "replace") in END_PIECES:
                    ends.add(i)
            self._mask = TokenMask(pieces, sorted(ends))
        return self._mask

    def _prompt_tokens(self, prompt: str) -> list[int]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        messages = [{"role": "user", "content": prompt}]
        if template:
            eos = self.llm.detokenize([self.llm.token_eos()], special=True).decode("utf-8", "replace")
            bos = self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "replace")
            text = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)(messages=messages).prompt
            return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return self.llm.tokenize(f"{prompt}\n".encode("utf-8"), add_bos=True, special=True)

    def generate(self, prompt, *, max_tokens, temperature, top_p, seed, constrained, on_text):
        import time

        from llama_cpp import LogitsProcessorList

        start = time.perf_counter()
        tokens = self._prompt_tokens(prompt)
        processors = None
        if constrained:
            mask = self._pieces()
            track = {"state": ObjGrammar.START, "seen": len(tokens)}

            def only_obj(input_ids, scores):
                for token in input_ids[track["seen"]:]:   # what was sampled since the last call
                    track["state"] = mask.advance(track["state"], int(token))
                track["seen"] = len(input_ids)
                allowed = mask.allowed(track["state"])
                masked = np.full_like(scores, -np.inf)
                masked[allowed] = scores[allowed]
                return masked

            processors = LogitsProcessorList([only_obj])
        text, count, stopped = [], 0, "max_tokens"
        stream = self.llm.create_completion(
            tokens, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=0, min_p=0.0,
            repeat_penalty=1.0, seed=seed, stream=True, logits_processor=processors)
        try:
            for chunk in stream:
                choice = chunk["choices"][0]
                piece = choice.get("text") or ""
                count += 1
                if piece:
                    text.append(piece)
                    if on_text(piece):
                        stopped = "max_faces"
                        break
                if choice.get("finish_reason") == "stop":
                    stopped = "end"
        finally:
            stream.close()
        return Generation("".join(text), count, time.perf_counter() - start, stopped)


class TransformersRunner(_Runner):
    """A transformers model (LLaMA-Mesh's full weights), on a GPU when there is one."""

    kind = "transformers"

    def __init__(self, path: Path, device: str | None = None):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise ModelNotFound("running a transformers model needs torch and transformers "
                                "(pip install torch transformers)") from None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self._mask: TokenMask | None = None

    def _end_tokens(self) -> list[int]:
        ends = self.model.generation_config.eos_token_id
        ends = ends if isinstance(ends, list) else [ends]
        return [e for e in ends + [self.tokenizer.eos_token_id] if e is not None]

    def _pieces(self) -> TokenMask:
        if self._mask is None:
            special = set(self.tokenizer.all_special_ids)
            pieces = [None if i in special else self.tokenizer.decode([i]) for i in range(len(self.tokenizer))]
            self._mask = TokenMask(pieces, self._end_tokens())
        return self._mask

    def generate(self, prompt, *, max_tokens, temperature, top_p, seed, constrained, on_text):
        import time

        import torch

        start = time.perf_counter()
        mask = self._pieces() if constrained else None
        messages = [{"role": "user", "content": prompt}]
        if self.tokenizer.chat_template:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(prompt + "\n", return_tensors="pt")["input_ids"]
        ids = ids.to(self.device)
        ends = set(self._end_tokens())
        state, rng = ObjGrammar.START, np.random.default_rng(seed)
        text, count, stopped, past = [], 0, "max_tokens", None
        with torch.inference_mode():
            step_input = ids
            for count in range(1, max_tokens + 1):
                out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1].float().cpu().numpy().astype(np.float64)
                if mask is not None:
                    allowed = mask.allowed(state)
                    masked = np.full_like(logits, -np.inf)
                    masked[allowed] = logits[allowed]
                    logits = masked
                token = _sample(logits, temperature, top_p, rng)
                if token in ends:
                    stopped = "end"
                    break
                if mask is not None:
                    state = mask.advance(state, token)
                piece = self.tokenizer.decode([token])
                text.append(piece)
                if on_text(piece):
                    stopped = "max_faces"
                    break
                step_input = torch.tensor([[token]], device=self.device)
        return Generation("".join(text), count, time.perf_counter() - start, stopped)


_RUNNERS: dict[tuple, _Runner] = {}


def load_runner(spec: ModelSpec) -> _Runner:
    """The runner for ``spec`` (kept per process: loading 8B weights takes long)."""
    key = (spec.kind, str(spec.path))
    if key not in _RUNNERS:
        _RUNNERS.clear()      # one large model in memory at a time
        _RUNNERS[key] = GGUFRunner(spec.path) if spec.kind == "gguf" else TransformersRunner(spec.path)
    return _RUNNERS[key]
