"""Jobs on a Ray cluster (DESIGN.md §8): the web process keeps the queue and the database, Ray
actors hold warm engines and do the heavy work.

STUDIO_RAY_ADDRESS unset runs every job in-process (studio/jobs.py's `Worker`); `auto` or
`ray://host:10001` makes the studio a Ray driver, and this module (the only one that imports
`ray`, and only then) takes over:

- `RayRunner` is the same `Worker` with one thread per actor: each thread claims the next job in
  the queue's order and runs the studio's own handler in the web process, so the job functions
  still read and write the database here, and only their heavy call (`Runtime.generate`,
  `Runtime.train_lora`) goes to an actor.
- `RayWorkers` is the actor pool behind those two calls. Every file a call needs (base model
  folder, LoRAs, adapters, a checkpoint to resume from) travels as bytes named by its content
  hash; an actor keeps what it received in its own cache folder, so it is sent once per actor.
  A generation prefers an idle actor that already holds its model and LoRAs; a training takes a
  whole actor (each actor runs one job at a time). Results come back as data: PNGs with their
  parameters, LoRA weights and each checkpoint (streamed back as it is written, so a job
  re-queued after its actor died resumes from it).
- Progress and cancel cross the boundary by polling: while an actor works, the web thread asks it
  for its new events (steps, checkpoints) every POLL seconds and hands them to the job's
  callbacks, and when the job's `should_stop()` answers True it sets the actor's stop flag, which
  the engine and the training loop check between steps.
- An actor that dies mid-call raises `WorkerLost` (Ray restarts the actor); the runner re-queues
  the job once. A cluster that cannot be reached at start is a StudioError naming its address;
  one that goes away later leaves the jobs queued (the runner does not claim them) and the status
  tab says so.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from storage import Store
from studio.config import Settings
from studio.errors import Unavailable
from studio.jobs import IDLE_POLL, Handler, Worker, WorkerLost

log = logging.getLogger(__name__)

#: How often (seconds) a web thread asks its actor for progress and passes on a cancel.
POLL = 0.1
#: How long the cluster may take to answer when the studio starts (seconds).
CONNECT_TIMEOUT = 15.0
#: How long a job waits for an actor that Ray is restarting after a crash (seconds).
RESTART_WAIT = 300.0
#: The request fields that name files or folders; local ones are sent to the actor as data.
PATH_FIELDS = ("model", "faceid_adapter", "style_adapter", "image_encoder", "controlnet", "single_file_config")


class ClusterUnreachable(Unavailable):
    """The Ray cluster named by STUDIO_RAY_ADDRESS does not answer."""


# -- files as data ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """A file or folder named by the hash of its content; `name` is the file's own name (a
    single-file checkpoint's extension matters to diffusers)."""

    digest: str
    name: str
    folder: bool


class Shipper:
    """Turns local paths into `Blob`s (their hashes kept per path, size and modification time, so
    an unchanged model is hashed once) and packs their bytes for sending."""

    def __init__(self):
        self._digests: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def blob(self, value: Any) -> Any:
        """A `Blob` for a local file or folder; anything else (a hub id, hf:// path, None) as is."""
        if not isinstance(value, (str, Path)) or not str(value) or str(value).startswith("hf://"):
            return value
        path = Path(value)
        if not path.exists():
            return value  # a hub id: the worker downloads it itself
        path = path.resolve()
        if path.is_dir():
            members = sorted(p for p in path.rglob("*") if p.is_file())
            key = (str(path), tuple((str(p.relative_to(path)), *_stamp(p)) for p in members))
        else:
            members, key = [path], (str(path), *_stamp(path))
        with self._lock:
            digest = self._digests.get(key)
        if digest is None:
            sha = hashlib.sha256()
            for member in members:
                sha.update(str(member.relative_to(path) if path.is_dir() else "").encode() + b"\0")
                with member.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        sha.update(chunk)
            digest = sha.hexdigest()
            with self._lock:
                self._digests[key] = digest
        return Blob(digest, path.name, path.is_dir())

    @staticmethod
    def pack(path: Path) -> bytes:
        """A file's bytes, or a folder as an uncompressed tar (symbolic links followed)."""
        if not path.is_dir():
            return path.read_bytes()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:
            tar.add(path, arcname=".")
        return buffer.getvalue()


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


# -- the actor -------------------------------------------------------------------------------


class EngineWorker:
    """One Ray actor: a warm engine on its device, a cache of received files, and the job it runs
    (one at a time; `poll` and `cancel` answer from other threads while it works). It never
    opens the studio's database and needs no shared disk."""

    def __init__(self, device: str, memory: dict[str, Any], threads: int):
        import torch

        torch.set_num_threads(threads)  # its share of the node's cores, not all of them
        self.device = device
        self.memory = memory
        self.cache = Path(tempfile.mkdtemp(prefix="studio-worker-"))
        self._engine = None
        self._events: list[tuple] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # files
    def missing(self, blobs: Sequence[Blob]) -> list[str]:
        """The digests of `blobs` this actor does not hold yet."""
        return [blob.digest for blob in blobs if not (self.cache / blob.digest / blob.name).exists()]

    def receive(self, blob: Blob, data: bytes) -> None:
        folder = self.cache / blob.digest
        partial = self.cache / f"{blob.digest}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        if blob.folder:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(partial / blob.name, filter="data")
        else:
            (partial / blob.name).write_bytes(data)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)

    def _local(self, value: Any) -> Any:
        return str(self.cache / value.digest / value.name) if isinstance(value, Blob) else value

    # progress and cancel
    def poll(self) -> list[tuple]:
        """The events since the last poll: ("step", step, total) and ("checkpoint", {...})."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def cancel(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        self._stop.clear()
        with self._lock:
            self._events = []

    def _on_step(self, step: int, total: int) -> None:
        with self._lock:
            if self._events and self._events[-1][0] == "step":
                self._events[-1] = ("step", step, total)  # only the latest step matters
            else:
                self._events.append(("step", step, total))

    # the heavy calls
    def generate(self, request) -> list:
        """`Engine.generate` on a request whose files are `Blob`s this actor holds."""
        from studio.engine import Engine

        self._start()
        if self._engine is None:
            self._engine = Engine(self.device, postprocess_dir=self.cache / "postprocess", **self.memory)
        changes = {name: self._local(getattr(request, name)) for name in PATH_FIELDS}
        changes["loras"] = tuple((name, self._local(path), weight) for name, path, weight in request.loras)
        return self._engine.generate(replace(request, **changes), on_step=self._on_step, should_stop=self._stop.is_set)

    def train(self, model, family: str, images: list, settings, resume: dict[str, bytes] | None, **options):
        """`train_lora` in a scratch folder of this actor; every checkpoint is queued for `poll`
        as bytes. Returns the final weights and kohya copy as bytes."""
        from studio.training import train_lora

        self._start()
        if self._engine is not None:
            self._engine.unload()  # the training needs the memory
        scratch = Path(tempfile.mkdtemp(prefix="train-", dir=self.cache))
        try:
            resume_from = None
            if resume:
                resume_from = scratch / "resume"
                resume_from.mkdir()
                for name, data in resume.items():
                    (resume_from / name).write_bytes(data)

            def streamed(checkpoint) -> None:
                record = {
                    "step": checkpoint.step,
                    "loss": checkpoint.loss,
                    "weights": checkpoint.weights.read_bytes(),
                    "sample": checkpoint.sample.read_bytes() if checkpoint.sample else None,
                    "resume": checkpoint.resume.read_bytes() if checkpoint.resume else None,
                }
                with self._lock:
                    self._events.append(("checkpoint", record))

            result = train_lora(
                self._local(model),
                family,
                images,
                settings,
                scratch / "out",
                device=self.device,
                on_step=self._on_step,
                should_stop=self._stop.is_set,
                on_checkpoint=streamed,
                resume_from=resume_from,
                **options,
            )
            return {
                "weights": result.weights.read_bytes(),
                "kohya": result.kohya.read_bytes(),
                "seconds_per_step": result.seconds_per_step,
                "loss": result.loss,
            }
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def pid(self) -> int:
        return os.getpid()


# -- the pool, in the web process ------------------------------------------------------------


class RayWorkers:
    """The engine actors on the cluster at `settings.ray_address`, and the two heavy calls the
    studio's `Runtime` sends them. `connect()` joins the cluster and starts the actors; a thread
    takes an actor for one call with `_take` and gives it back after."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.address = settings.ray_address
        self.actors: list[Any] = []
        self.held: list[set[str]] = []  # the digests each actor was sent (cache affinity)
        self.pids: list[int | None] = []
        self._busy: set[int] = set()
        self._free = threading.Condition()
        self._connect_lock = threading.Lock()
        self.shipper = Shipper()
        self.lost_since: float | None = None  # when the cluster stopped answering, if it did
        self.gpus = 0

    # connecting
    @property
    def connected(self) -> bool:
        return bool(self.actors)

    def connect(self) -> None:
        """Join the cluster (unless this process already did, as the tests do) and start the
        actors; ClusterUnreachable naming the address when it does not answer."""
        with self._connect_lock:
            if self.actors:
                return
            import ray

            self._check_reachable()
            if not ray.is_initialized():
                try:
                    # The studio package travels with the job: the nodes need Ray and the
                    # libraries, not this code on their disks.
                    root = Path(__file__).resolve().parent.parent
                    code = {"py_modules": [str(root / "studio"), str(root / "storage")]}
                    ray.init(address=self.address, runtime_env=code, log_to_driver=False, logging_level=logging.WARNING)
                except (ConnectionError, TimeoutError, RuntimeError, ValueError) as error:
                    raise ClusterUnreachable(
                        f"The Ray cluster at STUDIO_RAY_ADDRESS={self.address} cannot be reached: {error}. "
                        "Start it (`ray start --head`) or unset STUDIO_RAY_ADDRESS to run jobs in this process."
                    ) from None
            self._start_actors(ray)

    def _check_reachable(self) -> None:
        """A host:port or ray://host:port address must accept a connection within
        CONNECT_TIMEOUT: Ray itself retries an unreachable address for minutes."""
        if self.address == "auto":
            return  # Ray finds the local cluster itself and says at once when there is none
        parts = urlsplit(self.address if "://" in self.address else f"ray://{self.address}")
        try:
            host, port = parts.hostname, parts.port or 10001
        except ValueError:
            host = port = None
        if not host:
            raise ClusterUnreachable(
                f"STUDIO_RAY_ADDRESS={self.address} is not a Ray address: use auto, host:port or ray://host:10001."
            )
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
        except OSError as error:
            raise ClusterUnreachable(
                f"The Ray cluster at STUDIO_RAY_ADDRESS={self.address} cannot be reached "
                f"({error.strerror or error}). Start it (`ray start --head`) or unset STUDIO_RAY_ADDRESS "
                "to run jobs in this process."
            ) from None

    def _start_actors(self, ray) -> None:
        resources = ray.cluster_resources()
        cpus = self.settings.ray_worker_cpus
        self.gpus = int(resources.get("GPU", 0)) if self.settings.device != "cpu" else 0
        count = self.settings.ray_workers or self.gpus or max(1, int(resources.get("CPU", 1)) // cpus)
        memory = {"cpu_offload": True} if self.settings.cpu_offload else {}
        if self.settings.quantize:
            memory["quantize"] = self.settings.quantize
        # Threads: the heavy call, and `poll`/`cancel` answered while it runs. Restarted when it
        # dies; the call it was running fails (the runner re-queues its job).
        actor = ray.remote(EngineWorker).options(
            num_cpus=cpus, num_gpus=1 if self.gpus else 0, max_concurrency=4, max_restarts=-1
        )
        self.actors = [actor.remote(self.settings.device, memory, cpus) for _ in range(count)]
        self.held = [set() for _ in self.actors]
        self.pids = ray.get([a.pid.remote() for a in self.actors], timeout=300)
        log.info(
            "Ray cluster at %s: %d engine worker(s), %s each",
            self.address,
            count,
            "1 GPU" if self.gpus else f"{cpus} CPU",
        )

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []

    def reachable(self) -> bool:
        """Whether the cluster answers now (a quick call); remembers since when it does not."""
        import ray

        try:
            ray.get(self.actors[0].missing.remote([]), timeout=10) if self.actors else None
            self.lost_since = None
            return True
        except Exception:  # any failure to answer: the jobs wait
            if self.lost_since is None:
                self.lost_since = time.time()
                log.warning("the Ray cluster at %s does not answer; jobs wait for it", self.address)
            return False

    def describe(self) -> str:
        """What the status tab says about the runner."""
        if not self.actors:
            return f"Ray at {self.address} (not connected yet)"
        what = "1 GPU" if self.gpus else f"{self.settings.ray_worker_cpus} CPU"
        text = f"Ray at {self.address}: {len(self.actors)} engine worker(s), {what} each"
        if self.lost_since is not None:
            text += " — the cluster does not answer: jobs wait in the queue until it is back"
        return text

    # taking an actor
    def _take(self, blobs: Sequence[Blob]) -> int:
        """An idle actor, the one already holding most of `blobs` (cache affinity); waits for one."""
        wanted = {blob.digest for blob in blobs}
        with self._free:
            while True:
                idle = [n for n in range(len(self.actors)) if n not in self._busy]
                if idle:
                    best = max(idle, key=lambda n: (len(self.held[n] & wanted), -n))
                    self._busy.add(best)
                    return best
                self._free.wait()

    def _give_back(self, index: int) -> None:
        with self._free:
            self._busy.discard(index)
            self._free.notify()

    def _send(self, index: int, blobs: Sequence[Blob], paths: dict[str, Path]) -> None:
        import ray
        from ray.exceptions import ActorUnavailableError

        actor = self.actors[index]
        deadline = time.monotonic() + RESTART_WAIT
        while True:  # an actor Ray is restarting (after a crash) answers once it is back
            try:
                missing = set(ray.get(actor.missing.remote(list(blobs))))
                break
            except ActorUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for blob in blobs:
            if blob.digest in missing:
                ray.get(actor.receive.remote(blob, self.shipper.pack(paths[blob.digest])))
            self.held[index].add(blob.digest)

    def _call(self, blobs: list[Blob], paths: dict[str, Path], method: str, *args, on_event, should_stop, **kwargs):
        """Run `method` on an actor with these files, relaying its events and a cancel; returns
        its result. WorkerLost when the actor dies on the way; the actor's own errors as raised."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RaySystemError, RayTaskError

        index = self._take(blobs)
        actor = self.actors[index]
        try:
            self._send(index, blobs, paths)
            pending = getattr(actor, method).remote(*args, **kwargs)
            while True:
                done, _ = ray.wait([pending], timeout=POLL)
                for event in ray.get(actor.poll.remote()):
                    on_event(event)
                if done:
                    return ray.get(pending)
                if should_stop is not None and should_stop():
                    # Sent at every poll: one sent before the call started would be cleared by it.
                    actor.cancel.remote()
        except RayTaskError as error:
            if isinstance(error.cause, Exception):
                raise error.cause from None
            raise
        except (RayActorError, ActorDiedError, ActorUnavailableError) as error:
            self.held[index] = set()  # a restarted actor starts with an empty cache
            raise WorkerLost(f"its Ray worker died ({type(error).__name__})") from None
        except (ConnectionError, RaySystemError) as error:
            self.lost_since = self.lost_since or time.time()
            raise WorkerLost(f"the Ray cluster at {self.address} stopped answering ({error})") from None
        finally:
            self._give_back(index)

    def generate(self, request, *, on_step=None, should_stop=None) -> list:
        """`Engine.generate` on an actor; the same images as in this process."""
        paths: dict[str, Path] = {}
        blobs: list[Blob] = []

        def ship(value):
            blob = self.shipper.blob(value)
            if isinstance(blob, Blob):
                paths[blob.digest] = Path(value).resolve()
                blobs.append(blob)
            return blob

        changes = {name: ship(getattr(request, name)) for name in PATH_FIELDS if getattr(request, name) is not None}
        changes["loras"] = tuple((name, ship(path), weight) for name, path, weight in request.loras)
        shipped = replace(request, **changes)

        def on_event(event):
            if event[0] == "step" and on_step is not None:
                on_step(event[1], event[2])

        return self._call(blobs, paths, "generate", shipped, on_event=on_event, should_stop=should_stop)

    def train_lora(
        self,
        model,
        family: str,
        images: Sequence[Any],
        settings,
        output_dir: Path,
        *,
        device: str = "auto",
        on_step=None,
        should_stop=None,
        on_checkpoint: Callable | None = None,
        resume_from: Path | None = None,
        **options,
    ):
        """`studio.training.train_lora` on a whole actor: the checkpoints it streams back are
        written under `output_dir` and passed to `on_checkpoint` as they come, so a job
        re-queued after the actor died resumes from the last one."""
        from studio.training import KOHYA_NAME, RESUME_NAME, WEIGHTS_NAME, Checkpoint, TrainedLora

        blob = self.shipper.blob(model)
        blobs, paths = ([blob], {blob.digest: Path(model).resolve()}) if isinstance(blob, Blob) else ([], {})
        resume = None
        if resume_from is not None:
            resume = {path.name: path.read_bytes() for path in Path(resume_from).iterdir() if path.is_file()}
        output_dir.mkdir(parents=True, exist_ok=True)
        checkpoints: list[Checkpoint] = []

        def on_event(event):
            if event[0] == "step" and on_step is not None:
                on_step(event[1], event[2])
            elif event[0] == "checkpoint":
                record = event[1]
                folder = output_dir / f"checkpoint-{record['step']}"
                folder.mkdir(exist_ok=True)

                def put(name: str, data: bytes | None) -> Path | None:
                    if data is None:
                        return None
                    (folder / name).write_bytes(data)
                    return folder / name

                checkpoint = Checkpoint(
                    step=record["step"],
                    weights=put(WEIGHTS_NAME, record["weights"]),
                    sample=put("sample.png", record["sample"]),
                    loss=record["loss"],
                    resume=put(RESUME_NAME, record["resume"]),
                )
                checkpoints.append(checkpoint)
                if on_checkpoint is not None:
                    on_checkpoint(checkpoint)

        images = [image.copy() for image in images]  # plain PIL images pickle alike everywhere
        result = self._call(
            blobs, paths, "train", blob, family, images, settings, resume,
            on_event=on_event, should_stop=should_stop, **options,
        )  # fmt: skip
        (output_dir / WEIGHTS_NAME).write_bytes(result["weights"])
        (output_dir / KOHYA_NAME).write_bytes(result["kohya"])
        return TrainedLora(
            weights=output_dir / WEIGHTS_NAME,
            kohya=output_dir / KOHYA_NAME,
            checkpoints=tuple(checkpoints),
            seconds_per_step=result["seconds_per_step"],
            loss=result["loss"],
        )

    # tests and operators
    def kill(self, index: int) -> None:
        """Kill one actor as a crash would (Ray restarts it); for fault drills and tests."""
        import ray

        ray.kill(self.actors[index], no_restart=False)


# -- the runner ------------------------------------------------------------------------------


class RayRunner(Worker):
    """The job runner of a studio on Ray: `Worker`'s queue handling with one thread per actor
    (the studio's handlers run here; `Runtime` sends their heavy calls to `workers`). It joins
    the cluster in `start` (ClusterUnreachable naming the address when it cannot) and takes no
    job while the cluster does not answer."""

    def __init__(self, store: Store, handlers: dict[str, Handler], workers: RayWorkers, **options):
        super().__init__(store, handlers, **options)
        self.workers = workers

    def start(self) -> None:
        self.workers.connect()
        self.threads = len(self.workers.actors)
        super().start()

    def run_pending(self) -> int:
        self.workers.connect()
        return super().run_pending()

    def run_one(self) -> bool:
        if self.workers.lost_since is not None and not self.workers.reachable():
            self._wake.wait(IDLE_POLL * 5)  # the jobs wait queued until the cluster is back
            return False
        return super().run_one()
