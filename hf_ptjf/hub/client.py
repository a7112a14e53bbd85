"""Hub I/O for the recipe runner: push a folder, verify the pushed revision, download it pinned, model cards.

Everything goes through the real ``huggingface_hub`` client against ``huggingface_hub.constants.ENDPOINT``
(``HF_ENDPOINT``; tests point it at :class:`hf_ptjf.hub.HubServer` with
:func:`hf_ptjf.hub.use_endpoint`).  Failures surface as :class:`HubError`, whose message names the
repo, the endpoint and the likely fix, and never contains the token.

Retry policy (:func:`push_folder`, :func:`snapshot_at`, :func:`verify_revision`): connection errors,
timeouts and HTTP 408/429/5xx are retried with exponential backoff (``backoff * 2**i``, capped at 30 s);
any other HTTP error (401/403 auth, 404 not found, 400, 412, ...) is raised at once, since retrying
cannot fix it.  ``max_retries`` counts retries, so at most ``max_retries + 1`` attempts are made.
Note that huggingface_hub itself already retries a few calls (preupload, tree listings: up to 5 times,
1 to 8 s apart) before an attempt here fails; create_repo and the commit POST are not retried by it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import quote

from huggingface_hub import HfApi, ModelCard, ModelCardData, constants, get_token, snapshot_download
from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import (
    DEFAULT_IGNORE_PATTERNS,
    build_hf_headers,
    filter_repo_objects,
    get_session,
    hf_raise_for_status,
)
from huggingface_hub.utils import httpx as _httpx
from huggingface_hub.utils.sha import git_hash

from ..files import sha256_file

__all__ = [
    "HubError",
    "current_endpoint",
    "metrics_by_task",
    "push_folder",
    "redact",
    "repo_exists",
    "snapshot_at",
    "unreachable",
    "verify_revision",
    "write_model_card",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# never pushed: the Trainer's pickled arguments (the config is in the model card and the run's resolved recipe)
NOT_PUSHED = ["training_args.bin"]
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_MAX_BACKOFF_S = 30.0
# Hub tokens look like hf_ + 34 alphanumerics; also catch anything after "Bearer ".
_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_HINT_ENDPOINT = "is the Hub server at $HF_ENDPOINT ({endpoint}) running and reachable?"
_HINT_TOKEN = (
    "check your HF token (the `token=` argument, $HF_TOKEN or `hf auth login`) and that it may {access} {repo_id}"
)


class HubError(RuntimeError):
    """A Hub operation failed for good. ``status`` is the last HTTP status (None: no answer), ``attempts`` the tries."""

    def __init__(
        self,
        message: str,
        *,
        repo_id: str,
        endpoint: str,
        status: int | None = None,
        attempts: int = 1,
    ):
        super().__init__(message)
        self.repo_id, self.endpoint, self.status, self.attempts = repo_id, endpoint, status, attempts


def redact(text: str, token: str | None = None) -> str:
    """``text`` with ``token``, the locally configured HF token, ``hf_…`` tokens and ``Bearer …`` values masked."""
    for secret in {token, _local_token()}:
        if secret:
            text = text.replace(secret, "***")
    text = _TOKEN_RE.sub("hf_***", text)
    return _BEARER_RE.sub(r"\1***", text)


def _local_token() -> str | None:
    try:
        return get_token()
    except Exception:  # a broken token file must not hide the real error
        return None


def current_endpoint() -> str:
    """The Hub endpoint requests go to now (``HF_ENDPOINT`` at import, or as patched by ``use_endpoint``)."""
    return constants.ENDPOINT


def _api(token: str | None) -> HfApi:
    # Built per call, so the endpoint in force *now* is used (HfApi freezes it at construction).
    return HfApi(endpoint=current_endpoint(), token=token)


@contextlib.contextmanager
def _client_timeout(seconds: float | None) -> Iterator[None]:
    """Apply ``seconds`` to huggingface_hub's shared HTTP client, which has no timeout by default."""
    if seconds is None:
        yield
        return
    session = get_session()
    previous = session.timeout
    session.timeout = _httpx.Timeout(seconds)
    try:
        yield
    finally:
        session.timeout = previous


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def _is_transient(exc: BaseException) -> bool:
    """Connection errors, timeouts and 408/429/5xx, also when wrapped (e.g. by snapshot_download)."""
    for err in _causes(exc):
        if isinstance(err, _httpx.TransportError) and not isinstance(err, _httpx.ProxyError):
            return True
        if isinstance(err, (ConnectionError, TimeoutError)):
            return True
        status = _http_status(err)
        if status is not None:
            return status in _RETRY_STATUS
    return False


def _is_hub_failure(exc: BaseException) -> bool:
    """An HTTP answer, a network problem, or a missing file/snapshot, as opposed to a programming error."""
    return any(
        isinstance(err, (_httpx.HTTPError, OSError)) or _http_status(err) is not None for err in _causes(exc)
    )


def _describe(
    exc: BaseException, *, what: str, repo_id: str, endpoint: str, token: str | None, attempts: int, access: str
) -> str:
    """One actionable sentence for the failure, with a redacted cause."""
    status = next((s for s in map(_http_status, _causes(exc)) if s is not None), None)
    tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    cause = redact(f"{type(exc).__name__}: {exc}".splitlines()[0], token)
    if status in (401, 403):
        hint = _HINT_TOKEN.format(repo_id=repo_id, access=access)
        return f"Hub refused to {what} {repo_id!r} at {endpoint} (HTTP {status}): {hint}. Cause: {cause}"
    if status == 404:
        hint = _HINT_TOKEN.format(repo_id=repo_id, access=access)
        return (
            f"Could not {what} {repo_id!r} at {endpoint}: repository, revision or file not found (HTTP 404); "
            f"check the repo id and revision, or {hint} if it is private. Cause: {cause}"
        )
    if status is not None and status in _RETRY_STATUS:
        return (
            f"Hub at {endpoint} kept failing to {what} {repo_id!r}{tries} (last HTTP {status}): "
            f"{_HINT_ENDPOINT.format(endpoint=endpoint)} Retry later. Cause: {cause}"
        )
    if status is None and _is_transient(exc):
        return (
            f"Could not reach the Hub at {endpoint} to {what} {repo_id!r}{tries}: "
            f"{_HINT_ENDPOINT.format(endpoint=endpoint)} Cause: {cause}"
        )
    return f"Could not {what} {repo_id!r} at {endpoint}" + (f" (HTTP {status})" if status else "") + f": {cause}"


def _with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    repo_id: str,
    token: str | None,
    max_retries: int,
    backoff: float,
    access: str = "write to",
) -> T:
    """Run ``fn`` with bounded exponential-backoff retries on transient errors; HubError otherwise."""
    endpoint = current_endpoint()
    attempts = 0
    while True:
        attempts += 1
        try:
            return fn()
        except HubError:
            raise
        except Exception as exc:
            if not _is_hub_failure(exc):
                raise  # a bug or a bad argument, not the Hub: keep the original error
            transient = _is_transient(exc)
            if not transient or attempts > max_retries:
                message = _describe(
                    exc, what=what, repo_id=repo_id, endpoint=endpoint, token=token, attempts=attempts, access=access
                )
                status = next((s for s in map(_http_status, _causes(exc)) if s is not None), None)
                # `from None`: the chained client exception adds nothing the message lacks, and keeps tracebacks short.
                raise HubError(
                    message, repo_id=repo_id, endpoint=endpoint, status=status, attempts=attempts
                ) from None
            delay = min(backoff * (2 ** (attempts - 1)), _MAX_BACKOFF_S)
            logger.warning(
                "%s %s at %s failed (attempt %d/%d): %s; retrying in %.2fs",
                what,
                repo_id,
                endpoint,
                attempts,
                max_retries + 1,
                redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, token),
                delay,
            )
            time.sleep(delay)


@contextlib.contextmanager
def _xet_only_if_offered(repo_id: str, revision: str, token: str | None) -> Iterator[None]:
    """Upload through Xet only where the Hub grants a Xet write token; elsewhere through plain LFS.

    huggingface_hub (2.x) uploads every large file through Xet whenever ``hf_xet`` is installed, whatever
    the server: it does not fall back. The offline Hub speaks LFS only, so unless the endpoint hands out a
    Xet token, Xet is switched off (``HF_HUB_DISABLE_XET``, process-wide) for the length of the upload.
    """
    if constants.HF_HUB_DISABLE_XET or importlib.util.find_spec("hf_xet") is None:
        yield  # plain LFS already
        return
    url = f"{current_endpoint()}/api/models/{repo_id}/xet-write-token/{quote(revision, safe='')}"
    response = get_session().get(url, headers=build_hf_headers(token=token))
    if response.status_code in _RETRY_STATUS:
        hf_raise_for_status(response)  # the Hub is in trouble: let the retry policy decide
    if response.status_code == 200:
        yield
        return
    previous, constants.HF_HUB_DISABLE_XET = constants.HF_HUB_DISABLE_XET, True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = previous


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    commit_message: str,
    revision: str = "main",
    max_retries: int = 5,
    backoff: float = 0.5,
    timeout: float | None = 60.0,
    private: bool | None = None,
    mirror: bool = True,
) -> str:
    """Create ``repo_id`` if needed and commit ``folder`` (less :data:`NOT_PUSHED`) to ``revision``; returns the
    new commit sha.

    ``mirror=True`` also deletes remote files absent from ``folder`` (``.gitattributes`` is kept), so the
    revision holds exactly the folder and :func:`verify_revision` can compare them.  ``timeout`` (seconds)
    bounds each HTTP request.  Each attempt re-runs create_repo + upload; a retried upload whose files
    already landed makes no duplicate commit (unchanged files are skipped, the head sha is returned).

    Files stream from disk: large ones (what the Hub's preupload calls ``lfs``) are hashed in chunks and
    PUT as LFS objects, or through Xet where the Hub offers it; only small files travel inside the commit.
    An LFS object the Hub already holds (a push killed after its upload) is not uploaded again.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"push_folder: {folder} is not a directory")

    def attempt() -> str:
        api = _api(token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision != constants.DEFAULT_REVISION:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with _xet_only_if_offered(repo_id, revision, token):
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message,
                revision=revision,
                delete_patterns="*" if mirror else None,
                ignore_patterns=NOT_PUSHED,
            )
        return info.oid

    with _client_timeout(timeout):
        sha = _with_retries(
            attempt, what="push to", repo_id=repo_id, token=token, max_retries=max_retries, backoff=backoff
        )
    logger.info("pushed %s to %s@%s (%s)", folder, repo_id, sha, current_endpoint())
    return sha


def unreachable(timeout: float = 10.0) -> str | None:
    """Why the Hub at :func:`current_endpoint` cannot be reached (connection refused, timeout), or None if it
    answers at all (any HTTP status: auth is checked when pushing)."""
    url = f"{current_endpoint()}/api/whoami-v2"
    try:
        with _client_timeout(timeout):
            get_session().get(url, headers=build_hf_headers(token=_local_token()), timeout=timeout)
    except Exception as e:  # noqa: BLE001 - any transport failure means: not reachable
        return f"{type(e).__name__}: {redact(' '.join(str(e).split()))[:200]}"
    return None


def repo_exists(repo_id: str, timeout: float = 10.0) -> bool:
    """Whether the Hub at :func:`current_endpoint` has model repo ``repo_id`` (visible with the local token)."""
    with _client_timeout(timeout):
        return _api(_local_token()).repo_exists(repo_id)


def _local_files(folder: Path) -> dict[str, Path]:
    """Files ``upload_folder`` would push from ``folder`` (same ignore rules), by repo path."""
    paths = {p.relative_to(folder).as_posix(): p for p in sorted(folder.glob("**/*")) if p.is_file()}
    kept = filter_repo_objects(paths.keys(), ignore_patterns=[*DEFAULT_IGNORE_PATTERNS, *NOT_PUSHED])
    return {rel: paths[rel] for rel in kept}


def verify_revision(
    repo_id: str,
    sha: str,
    folder: str | Path,
    *,
    token: str | None = None,
    max_retries: int = 2,
    backoff: float = 0.5,
    timeout: float | None = 60.0,
) -> None:
    """Check that revision ``sha`` of ``repo_id`` holds exactly ``folder``'s files: names, sizes, hashes.

    Hashes are the ones the Hub reports: sha256 of the content for LFS/Xet files, the git blob sha1 for
    regular ones; both are recomputed locally.  A remote ``.gitattributes`` the folder lacks is ignored
    (the Hub creates it).  Raises :class:`HubError` listing every mismatch.
    """
    folder = Path(folder)

    def fetch() -> list:
        # repo_info, not list_repo_tree: the latter retries internally for ~25 s when the Hub is down.
        info = _api(token).repo_info(repo_id, revision=sha, files_metadata=True, timeout=timeout)
        return list(info.siblings or [])

    remote = {
        s.rfilename: s
        for s in _with_retries(
            fetch,
            what="list files of",
            repo_id=repo_id,
            token=token,
            max_retries=max_retries,
            backoff=backoff,
            access="read",
        )
    }
    local = _local_files(folder)
    if ".gitattributes" not in local:
        remote.pop(".gitattributes", None)

    problems = [f"missing on the Hub: {p}" for p in sorted(local.keys() - remote.keys())]
    problems += [f"only on the Hub: {p}" for p in sorted(remote.keys() - local.keys())]
    for path in sorted(local.keys() & remote.keys()):
        entry, local_path = remote[path], local[path]
        size = local_path.stat().st_size
        if entry.size != size:
            problems.append(f"size differs for {path}: Hub {entry.size} B, local {size} B")
        elif entry.lfs is not None:
            if entry.lfs.sha256 != sha256_file(local_path):
                problems.append(f"sha256 differs for {path}")
        elif entry.blob_id != git_hash(local_path.read_bytes()):
            problems.append(f"git blob sha1 differs for {path}")
    if problems:
        endpoint = current_endpoint()
        listing = "; ".join(problems[:20]) + (f"; ... ({len(problems)} in all)" if len(problems) > 20 else "")
        raise HubError(
            f"Revision {sha} of {repo_id!r} at {endpoint} does not match {folder}: {listing}",
            repo_id=repo_id,
            endpoint=endpoint,
        )


def _tree_listing_cached(repo_id: str, sha: str, cache_dir: str | Path | None) -> bool:
    # An online snapshot_download stores the commit's file list in <repo cache>/trees/<sha>.json; only with
    # it can a cached snapshot be checked for completeness (from_pretrained may have fetched a few files only).
    storage = Path(cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    return (storage / "trees" / f"{sha}.json").is_file()


def snapshot_at(
    repo_id: str,
    revision: str,
    *,
    token: str | None = None,
    cache_dir: str | Path | None = None,
    max_retries: int = 3,
    backoff: float = 0.5,
    timeout: float | None = 60.0,
) -> Path:
    """Download (or reuse from the cache) ``repo_id`` at ``revision`` (pin a commit sha); returns the folder.

    The folder can be passed to ``from_pretrained``; equivalently ``from_pretrained(repo_id, revision=sha)``.
    A cached snapshot of a commit sha is reused without downloading again.
    """

    if re.fullmatch(r"[0-9a-f]{40}", revision) and _tree_listing_cached(repo_id, revision, cache_dir):
        with contextlib.suppress(LocalEntryNotFoundError, IncompleteSnapshotError):
            # A commit never changes: a complete cached snapshot is good even when the Hub is down.
            return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))

    def fetch() -> str:
        # Probe with repo_info first: it fails fast when the Hub is down, whereas the tree listing inside
        # snapshot_download retries on its own for ~25 s. It also pins a branch name to one commit.
        sha = _api(token).repo_info(repo_id, revision=revision, timeout=timeout).sha
        return snapshot_download(repo_id, revision=sha, token=token, cache_dir=cache_dir, endpoint=current_endpoint())

    path = _with_retries(
        fetch,
        what=f"download revision {revision} of",
        repo_id=repo_id,
        token=token,
        max_retries=max_retries,
        backoff=backoff,
        access="read",
    )
    return Path(path)


def _cell(value: object) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_by_task(metrics: Mapping[str, object], tasks: Sequence[str]) -> dict[str, object]:
    """``{"eval_en-fr_bleu": x}`` -> ``{"en-fr": {"bleu": x}}`` for the names of ``tasks``; other entries stay."""
    out: dict[str, object] = {}
    for name, value in metrics.items():
        # the longest task name first: en-fr-x before en-fr
        task = next((t for t in sorted(tasks, key=len, reverse=True) if name.startswith(f"eval_{t}_")), None)
        if task is None or isinstance(value, Mapping):
            out[name] = value
        else:
            out.setdefault(task, {})[name[len(f"eval_{task}_"):]] = value  # type: ignore[index]
    return out


def _card_data(
    *,
    tasks: list[str],
    rates: Mapping[str, float],
    stage_steps: Mapping[str, int],
    method: str,
    base_model: str | None,
    base_revision: str | None,
    license: str | None,  # noqa: A002 - the model card field's name
    language: str | Sequence[str] | None,
    online: Mapping[str, Any] | None = None,
) -> ModelCardData:
    """The card's YAML metadata: tags, base_model and the PTJF settings under ``hf_ptjf``."""
    return ModelCardData(
        language=language,
        license=license,
        library_name="transformers",
        base_model=base_model,
        tags=["hf_ptjf", "multi-task", re.sub(r"[^a-z0-9-]+", "-", method.lower()).strip("-") or "ptjf"],
        hf_ptjf={
            "method": method,
            **({"base_model_revision": base_revision} if base_revision else {}),
            "tasks": tasks,
            "rates": {t: float(rates[t]) for t in tasks if t in rates},
            "steps": {k: int(v) for k, v in stage_steps.items()},
            **({"online": dict(online)} if online else {}),
        },
    )


def _card_body(
    *,
    repo_id: str,
    tasks: list[str],
    rates: Mapping[str, float],
    stage_steps: Mapping[str, int],
    metrics: Mapping[str, object],
    method: str,
    base_model: str | None,
    base_revision: str | None,
    online: Mapping[str, Any] | None = None,
) -> str:
    """The card's Markdown: what it was trained with, then the rates, steps and metrics tables."""
    metric_rows: list[tuple[object, ...]] = []
    for name, value in metrics_by_task(metrics, tasks).items():
        if isinstance(value, Mapping):
            metric_rows += [(name, metric, v) for metric, v in value.items()]
        else:
            metric_rows.append(("all", name, value))
    start = "."
    if base_model:
        start = f", starting from `{base_model}`" + (f" at revision `{base_revision}`." if base_revision else ".")
    body = [
        f"# {repo_id.split('/')[-1]}",
        "",
        f"Trained with `hf_ptjf` using **{_cell(method)}**" + start,
        "",
        "## Tasks and mixing rates",
        "",
        *_rates_section(tasks, rates, online),
        "",
        "## Training steps",
        "",
        _table(["Stage", "Steps"], list(stage_steps.items())),
        "",
        "## Metrics",
        "",
        _table(["Task", "Metric", "Value"], metric_rows) if metric_rows else "No metrics recorded.",
        "",
        *_metric_legend({str(row[1]) for row in metric_rows}),
    ]
    return "\n".join(body)


def _rates_section(tasks: list[str], rates: Mapping[str, float], online: Mapping[str, Any] | None) -> list[str]:
    """The rates table: one rate per task, or an online strategy's first and last rates with what decided them."""
    if not online:
        return [_table(["Task", "Rate"], [(t, float(rates[t]) if t in rates else "n/a") for t in tasks])]
    final = online.get("final_rates") or {}
    params = ", ".join(f"{k} {v}" for k, v in online.items() if k not in ("strategy", "final_rates", "updates"))
    return [f"The rates were decided while training by the online strategy `{online.get('strategy')}` ({params}; "
            f"{online.get('updates', 0)} updates from the per-task training loss): the first and the last rates.", "",
            _table(["Task", "First rate", "Last rate"],
                   [(t, float(rates[t]) if t in rates else "n/a", float(final[t]) if t in final else "n/a")
                    for t in tasks])]


# What the card says under its metrics table about the translation metrics that are not self-explanatory
_METRIC_LEGEND = {
    "chrf": "`chrf`: chrF++ (sacreBLEU's chrF with word bigrams, 0-100) of the generated translations.",
    "off_target": "`off_target`: the share of generated translations not in the task's target language "
                  "(detected with py3langid); `off_target_note` says why a task has none.",
}


def _metric_legend(names: set[str]) -> list[str]:
    """Lines explaining the metrics of ``names`` that the legend knows (none for other cards: they stay as they were)."""
    lines = [text for name, text in _METRIC_LEGEND.items() if name in names or f"{name}_note" in names]
    return [part for text in lines for part in (text, "")]


def write_model_card(
    folder: str | Path,
    *,
    repo_id: str,
    base_model: str | None = None,
    base_revision: str | None = None,
    tasks: Sequence[str],
    rates: Mapping[str, float] | Sequence[float],
    steps: int | Mapping[str, int],
    metrics: Mapping[str, object],
    method: str,
    license: str | None = None,  # noqa: A002 - the model card field's name
    language: str | Sequence[str] | None = None,
    online: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``folder/README.md``: YAML metadata (tags, base_model, the PTJF settings) and Markdown tables.

    ``rates``: sampling probability per task (mapping, or a sequence aligned with ``tasks``);
    ``steps``: total steps or steps per stage (e.g. ``{"pretrain": 1000, "finetune": 200}``);
    ``metrics``: ``{name: value}`` or ``{task: {name: value}}``; a flat ``eval_<task>_<metric>`` name of one of
    ``tasks`` is listed under that task;
    ``base_revision``: the commit of ``base_model`` the weights were loaded at (recorded beside it);
    ``online``: an online mixture's record (``strategy``, its parameters, ``updates``, ``final_rates``; ``rates`` are
    then its first rates).
    """
    tasks = list(tasks)
    if not isinstance(rates, Mapping):
        rates = list(rates)
        if len(rates) != len(tasks):
            raise ValueError(f"write_model_card: {len(rates)} rates for {len(tasks)} tasks; give one rate per task.")
        rates = dict(zip(tasks, rates))
    stage_steps = dict(steps) if isinstance(steps, Mapping) else {"total": int(steps)}
    common = dict(tasks=tasks, rates=rates, stage_steps=stage_steps, method=method, base_model=base_model,
                  base_revision=base_revision, online=online)
    card_data = _card_data(**common, license=license, language=language)
    body = _card_body(**common, repo_id=repo_id, metrics=metrics)
    card = ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + body)
    path = Path(folder) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path
