"""What a pipeline is: the function, its parameter schema, the inputs it takes, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ValidationError

from backend.errors import BadInputs, BadParams, MissingDependency, OverBudget
from backend.mesh.types import Mesh
from backend.progress import ProgressFn


@dataclass
class PipelineResult:
    """What a pipeline returns.

    Attributes
    ----------
    mesh : Mesh
        The result, in the caller's frame and scale.
    summary : dict
        Small JSON-able facts for people (faces, watertight, seconds, ...).
    extras : dict[str, bytes]
        Named extra files (e.g. a preview PNG), served next to the result.
    """

    mesh: Mesh
    summary: dict = field(default_factory=dict)
    extras: dict[str, bytes] = field(default_factory=dict)


#: How a backend gets PyTorch, for the messages of the model-backed pipelines.
TORCH_HINT = ("install PyTorch into the backend's Python (pip install torch==2.13.0; on Linux and Windows add "
              "--index-url https://download.pytorch.org/whl/cpu for the CPU build), or run the backend from an "
              "environment that has it (Meshsmith's preferences: Backend Python)")


def needs_torch(alternative: str = "") -> tuple[tuple[str, str], ...]:
    """A :attr:`Pipeline.needs` entry for PyTorch, naming the ``alternative`` that does without it."""
    return (("torch", TORCH_HINT + (f"; or {alternative}" if alternative else "")),)

#: Memory a worker holds before a job's own work (interpreter, numpy, scipy, trimesh: the
#: children of ``python -m backend bench budget`` reach 62 MB after the imports; this leaves
#: room for the worker's own state).
WORKER_BASE_BYTES = 160 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """A job's peak memory above the worker's base, and which parameters drive it (for the message)."""

    bytes: int
    lower: str


#: ``estimate(facts, params)``: facts are the inputs' :class:`backend.inputs.Checked` facts by input name.
EstimateFn = Callable[[dict[str, dict], BaseModel], MemoryEstimate]


@dataclass(frozen=True)
class Pipeline:
    """A pipeline: its name, parameter schema, the inputs it takes and the function that runs it.

    Inputs are named uploads (:data:`backend.inputs.INPUT_KINDS`: ``mesh``, ``source``,
    ``views``). ``inputs`` lists every name the pipeline accepts; ``required`` those that
    must be given; each group in ``one_of`` must be given exactly one of its names. ``run``
    receives the loaded inputs by name (only those given).
    """

    name: str
    title: str
    params: type[BaseModel]
    inputs: tuple[str, ...]
    run: Callable[[dict[str, Any], BaseModel, ProgressFn], PipelineResult]
    required: tuple[str, ...] = ("mesh",)
    one_of: tuple[tuple[str, ...], ...] = ()
    estimate: EstimateFn | None = None
    #: Optional modules (import names) the pipeline cannot run without, with what provides them.
    needs: tuple[tuple[str, str], ...] = ()
    #: What a job with these parameters needs, when that depends on them (a mode that does
    #: without a module); None: :attr:`needs` always.
    needs_for: Callable[[BaseModel], tuple[tuple[str, str], ...]] | None = None

    def unavailable(self, params: BaseModel | None = None) -> str:
        """Why this pipeline (with ``params``, when given) cannot run in this Python ("" when it can):
        its missing modules."""
        import importlib.util

        def importable(module: str) -> bool:
            try:
                return importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):     # blocked (sys.modules[name] = None) or broken
                return False

        needs = self.needs_for(params) if params is not None and self.needs_for is not None else self.needs
        missing = [(module, hint) for module, hint in needs if not importable(module)]
        if not missing:
            return ""
        names = ", ".join(module for module, _ in missing)
        return f"{self.title} needs {names}, which this backend's Python does not have: {missing[0][1]}"

    def check_available(self, params: BaseModel | None = None) -> None:
        """Raise :class:`MissingDependency` when :meth:`unavailable` says why."""
        why = self.unavailable(params)
        if why:
            raise MissingDependency(why)

    def parse_params(self, raw: dict) -> BaseModel:
        """Validate ``raw`` against this pipeline's schema; raise :class:`BadParams`."""
        try:
            return self.params.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}" for err in exc.errors()
            )
            raise BadParams(f"Parameters for '{self.name}' are not valid: {problems}.") from exc

    def check_budget(self, facts: dict[str, dict], params: BaseModel, budget_bytes: int | None) -> int | None:
        """The job's estimated peak memory in bytes (worker included); raise :class:`OverBudget`
        when it is over ``budget_bytes`` (None: no budget)."""
        if self.estimate is None:
            return None
        estimate = self.estimate(facts, params)
        total = WORKER_BASE_BYTES + int(estimate.bytes)
        if budget_bytes is not None and total > budget_bytes:
            raise OverBudget(
                f"This {self.name} job would need about {total / 2**30:.1f} GB of memory, more than this backend's "
                f"budget of {budget_bytes / 2**30:.1f} GB per job (--max-job-memory-gb). Lower {estimate.lower}.")
        return total

    def check_inputs(self, given: Iterable[str]) -> None:
        """Raise :class:`BadInputs` unless ``given`` (input names) fits what this pipeline takes."""
        given = set(given)
        unknown = sorted(given - set(self.inputs))
        if unknown:
            raise BadInputs(f"The '{self.name}' pipeline does not take {_names(unknown)}; it takes "
                            f"{_names(self.inputs)}.")
        missing = [n for n in self.required if n not in given]
        if missing:
            raise BadInputs(f"The '{self.name}' pipeline needs {_names(missing)}: {_describe(missing[0])}.")
        for group in self.one_of:
            present = [n for n in group if n in given]
            if len(present) != 1:
                how = "both" if len(present) == 2 else "several" if present else "none"
                raise BadInputs(f"The '{self.name}' pipeline needs exactly one of {_names(group, 'or')}, got "
                                f"{how}: " + "; ".join(f"'{n}' is {_describe(n)}" for n in group) + ".")

    def describe_inputs(self) -> dict:
        """What ``GET /v1/health`` says about this pipeline's inputs."""
        from backend.inputs import INPUT_KINDS

        return {"accepts": {n: INPUT_KINDS[n].description for n in self.inputs}, "required": list(self.required),
                "one_of": [list(g) for g in self.one_of]}


def _names(names: Iterable[str], joiner: str = "and") -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {joiner} {quoted[-1]}"


def _describe(name: str) -> str:
    from backend.inputs import INPUT_KINDS

    return INPUT_KINDS[name].description if name in INPUT_KINDS else "an input"
