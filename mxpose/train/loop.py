"""The training loop: data parallel over devices, optionally over machines.

:class:`PoseTrainer` wires config, data, network, loss, optimizer and checkpoints:

* one optimizer step per iteration on a batch of ``train.batch_size`` samples PER DEVICE
  (a worker's batch is ``batch_size * num_devices``), split with
  ``gluon.utils.split_and_load``; the loss (:class:`mxpose.loss.MultiStageL2Loss`) is
  normalised by the worker's whole batch, so per-device gradients add up to the batch
  gradient and the trainer steps with ``step(1)``; with a ``dist_*`` kvstore the
  gradients of all workers are summed and the step is ``step(num_workers)`` (the mean
  over the global batch of ``batch_size * num_devices * num_workers``).
* the learning rate follows :class:`~mxpose.train.schedule.StepWarmupSchedule` on the
  optimizer's update count; per-parameter multipliers come from ``train.lr_mult``.
* a non-finite loss skips the update (a warning names the iteration); ``train.max_bad_steps``
  of them in a row stop the run with :class:`TrainError`. With a ``dist_*`` kvstore every
  worker must push each step, so a worker with a non-finite loss pushes zero gradients.
* checkpoints every ``train.save_every`` iterations and at the end
  (:mod:`mxpose.train.checkpoint`), a JSON-lines log every ``train.log_every`` iterations.
"""
from __future__ import annotations

import logging
import os
import random
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Union

import numpy as np

from ..runs import (CheckpointError, CorruptCheckpointError, RunError, load_params,
                    make_contexts, parse_gpus, previous_good_checkpoint)
from . import checkpoint as ckpt
from .logger import JsonLinesLog
from .optim import build_trainer
from .schedule import schedule_from_config

__all__ = ["TrainError", "RunOptions", "PoseTrainer", "parse_gpus", "make_contexts"]

log = logging.getLogger("mxpose.train")


class TrainError(RunError):
    """A run cannot start or must stop (bad option, diverged, missing file)."""


_CKPT_RE = re.compile(r"^(?P<prefix>.+)-(?P<it>\d{4,})\.params$")


@dataclass
class RunOptions:
    """Per-run choices that are not part of the experiment config.

    resume : None (start fresh), ``"latest"`` or an iteration number.
    weights : checkpoint ``.params`` to start from. With ``weights_only`` only the
        parameters that match by name and shape are taken (fresh optimizer, iteration 0,
        missing/unused ones reported); otherwise the checkpoint's optimizer state and
        iteration come along (it must have its ``.json``/``.states``).
    final_params : also write the final parameters here (``{rank}`` is replaced by the
        distributed worker rank), e.g. to check that workers agree.
    save : write checkpoints, config and log (False for benchmarks).
    command : the command line that started the run (``tools/train.py`` arguments),
        recorded in each checkpoint's provenance for ``train.py --reproduce``.
    """
    contexts: list = field(default_factory=list)
    resume: Union[None, str, int] = None
    weights: Optional[str] = None
    weights_only: bool = False
    kvstore: str = "device"
    progress: bool = True
    hybridize: bool = True
    max_items: Optional[int] = None
    final_params: Optional[str] = None
    save: bool = True
    command: Optional[list] = None


def _to_plain(cfg):
    import json
    return json.loads(json.dumps(cfg))


class PoseTrainer:
    """Set up and run one training run.

    Parameters
    ----------
    cfg : EasyDict
        Resolved experiment config (:func:`mxpose.config.load_config`).
    options : RunOptions
    echo : callable
        Where one-line status messages go (``print`` in the CLI).
    dataset : optional
        Use this dataset (items as :class:`~mxpose.data.dataset.PoseDataset`'s, with a
        ``reseed(seed)`` method) instead of reading ``cfg.data.db`` (benchmarks, tests).
    """

    def __init__(self, cfg, options: RunOptions, echo=None, dataset=None):
        self.cfg = cfg
        self._given_dataset = dataset
        self.opt = options
        self.echo = echo or (lambda msg: log.info(msg))
        self.prefix = ckpt.checkpoint_prefix(cfg)
        self.start_iter = 0
        self.iteration = 0
        self.timings: List[tuple] = []     # per iteration: (data wait s, total s)
        self._provenance_static = None
        self._t_run = None

    # -- set-up -----------------------------------------------------------------------------
    def setup(self):
        """Build everything :meth:`run` needs, one named step after the other."""
        self._init_devices()
        self._find_start()
        self._connect()
        self._build_data()
        self._build_model()
        self._load_weights()
        self._build_loss()
        self._build_trainer()
        return self

    def _init_devices(self):
        """Contexts, AMP check, and the global seeds (every distributed worker then
        initialises the same weights)."""
        import mxnet as mx
        self.ctxs = list(self.opt.contexts) or [mx.cpu()]
        on_gpu = all(c.device_type == "gpu" for c in self.ctxs)
        self.amp = bool(self.cfg.train.amp)
        if self.amp and not on_gpu:
            raise TrainError("--amp / train.amp needs GPUs: mxnet.contrib.amp casts to "
                             "float16, which MXNet 1.9.1 runs on CUDA devices only")
        self.seed = int(self.cfg.train.seed)
        random.seed(self.seed)
        np.random.seed(self.seed)
        mx.random.seed(self.seed)

    def _find_start(self):
        """Where the run starts: ``--resume`` (a checkpoint of this run), ``--weights``
        (another run's checkpoint, optimizer and iteration included) or iteration 0.

        Sets ``resume_info`` (the checkpoint's ``.json``), ``resume_params``,
        ``resume_states`` and ``start_iter``.
        """
        cfg, opt = self.cfg, self.opt
        self.resume_info = None
        self.resume_params = self.resume_states = None
        self._resume_prefix = None
        if opt.resume is not None and opt.weights:
            raise TrainError("give either --resume or --weights, not both")
        if opt.resume is not None:
            it = (ckpt.latest_checkpoint(self.prefix) if opt.resume == "latest"
                  else int(opt.resume))
            if it is None:
                raise TrainError(f"--resume: no checkpoint {self.prefix}-NNNN.params/.json "
                                 f"to resume from")
            self._resume_prefix = self.prefix
        elif opt.weights and not opt.weights_only:
            m = _CKPT_RE.match(opt.weights)
            if not os.path.isfile(opt.weights):
                raise TrainError(f"--weights: {opt.weights} does not exist")
            if not m or not os.path.isfile(ckpt.checkpoint_path(m["prefix"], int(m["it"]),
                                                                 "json")):
                raise TrainError(f"--weights {opt.weights}: not an mxpose checkpoint with its "
                                 f".json beside it; add --weights-only to start from its "
                                 f"parameters with a fresh optimizer")
            self._resume_prefix, it = m["prefix"], int(m["it"])
        if self._resume_prefix is not None:
            self.resume_info = ckpt.read_checkpoint_info(self._resume_prefix, it)
            self.resume_params = ckpt.checkpoint_path(self._resume_prefix, it)
            self.resume_states = ckpt.checkpoint_path(self._resume_prefix, it, "states")
        self.start_iter = int(self.resume_info["iteration"]) if self.resume_info else 0
        self.iteration = self.start_iter
        if self.start_iter >= int(cfg.train.max_iters):
            raise TrainError(f"nothing to do: the run is at iteration {self.start_iter} and "
                             f"train.max_iters is {cfg.train.max_iters}")

    def _connect(self):
        """The kvstore; creating a ``dist_*`` one connects to the scheduler and tells this
        worker's rank and the number of workers."""
        import mxnet as mx
        kv = self.opt.kvstore or "device"
        self.distributed = "dist" in kv
        if self.distributed:
            if "async" in kv:
                raise TrainError("asynchronous kvstores are not supported; use dist_sync or "
                                 "dist_device_sync")
            if self.amp:
                raise TrainError("--amp is not supported with dist_* kvstores (the servers "
                                 "would apply overflowing float16 steps)")
            if not os.environ.get("DMLC_ROLE"):
                raise TrainError(f"--kvstore {kv} needs the DMLC_* environment of a "
                                 f"parameter-server job: start workers with tools/launch.py")
            kv = mx.kv.create(kv)
            self.rank, self.num_workers = kv.rank, kv.num_workers
        else:
            self.rank, self.num_workers = 0, 1
        self.kvstore = kv
        self.is_main = self.rank == 0

    def _build_data(self):
        """The dataset and this worker's sample stream (its shard of the DB; see
        :mod:`mxpose.data.loader`). A worker's batch is ``batch_size`` per device."""
        from ..data.dataset import PoseDataset, is_auto, resolve_skeleton
        from ..data.loader import ShardSampler
        cfg = self.cfg
        self.batch_per_device = int(cfg.train.batch_size)
        if self.batch_per_device < 1:
            raise TrainError(f"train.batch_size must be >= 1, got {self.batch_per_device}")
        self.batch = self.batch_per_device * len(self.ctxs)
        # data.skeleton 'auto' becomes the DB's layout here, before the model is built
        # and the config saved; a layout with unconnected keypoints is refused.
        if self._given_dataset is not None and is_auto(cfg.data.skeleton):
            cfg.data.skeleton = self._given_dataset.skeleton.to_dict()
        resolve_skeleton(cfg, check=True)
        if self._given_dataset is not None:
            self.dataset = self._given_dataset
        else:
            self.dataset = PoseDataset(cfg.data.db, cfg.data.train_split, config=cfg,
                                       train=True, max_items=self.opt.max_items)
        self.stream = ShardSampler(len(self.dataset), shuffle=True, seed=self.seed,
                                   rank=self.rank, num_parts=self.num_workers, pad=False)

    def _build_model(self):
        """The network of ``cfg.model`` on every context, with the ImageNet backbone of
        ``model.pretrained_base`` when the run starts fresh."""
        from ..model_zoo import get_model, load_pretrained_base
        cfg = self.cfg
        if self.amp:
            from mxnet.contrib import amp
            amp.init()
        self.model_kwargs = dict(cfg.model.kwargs or {})
        self.model_kwargs.setdefault("skeleton", cfg.data.skeleton)
        self.net = get_model(cfg.model.name, **self.model_kwargs)
        self.net.initialize(ctx=self.ctxs)
        if cfg.model.pretrained_base and self.resume_params is None:
            rep = load_pretrained_base(self.net, cfg.model.pretrained_base, ctx=self.ctxs)
            self.echo(f"backbone: {len(rep['loaded'])} parameters from "
                      f"{cfg.model.pretrained_base} ({len(rep['unused'])} unused)")

    def _load_weights(self):
        """``--weights-only``: what matches by name and shape; resuming: the whole
        checkpoint (a corrupt file is named with the previous good checkpoint). Then
        hybridize."""
        cfg, opt = self.cfg, self.opt
        self.weights_report = None
        if opt.weights and opt.weights_only:
            rep = ckpt.load_weights(self.net, opt.weights)
            self.weights_report = rep
            self.echo(_weights_summary(opt.weights, rep))
            if not rep["loaded"]:
                raise TrainError(f"--weights {opt.weights}: no parameter matches the network "
                                 f"{cfg.model.name} by name and shape")
        if self.resume_params is not None:
            try:
                load_params(self.net, self.resume_params, ctx=self.ctxs)
            except CheckpointError as e:
                if not isinstance(e, CorruptCheckpointError):
                    raise TrainError(f"{e} ({cfg.model.name} {self.model_kwargs}; use "
                                     f"--weights-only to load what matches)") from None
                flag = "--resume" if opt.resume is not None else "--weights"
                it = int(self.resume_info["iteration"])
                prev = previous_good_checkpoint(self._resume_prefix, it)
                if prev is None:
                    hint = "no earlier checkpoint of this run reads"
                else:
                    hint = (f"the previous good checkpoint is "
                            f"{ckpt.checkpoint_path(self._resume_prefix, prev)}")
                    if flag == "--resume":
                        hint += f": resume from it with --resume {prev}"
                raise TrainError(f"{flag}: {e}; {hint}") from None
        if opt.hybridize:
            # static_shape with several contexts corrupts BatchNorm running statistics in
            # MXNet 1.9.1 (threaded engine, checked on CPU): the moving means differ from
            # the imperative run and between identical runs. static_alloc alone is exact.
            self.net.hybridize(static_alloc=True, static_shape=len(self.ctxs) == 1)

    def _build_loss(self):
        """Masked multi-stage L2, normalised by the worker's whole batch (all devices)."""
        from ..loss import MultiStageL2Loss
        # PAF-first networks name what each output predicts (PAF-only, heatmap-only stages)
        self.loss = MultiStageL2Loss(batch_size=self.batch,
                                     use_masks=bool(self.cfg.targets.use_masks),
                                     kinds=getattr(self.net, "output_kinds", None))

    def _build_trainer(self):
        """lr schedule, gluon Trainer and, when resuming, the optimizer state."""
        cfg = self.cfg
        self.schedule = schedule_from_config(cfg.train)
        info = self.resume_info
        has_states = bool(info and info.get("has_states"))
        begin = info.get("num_update", self.start_iter) if info else 0
        # AMP skips overflowing steps in the trainer-side update only, so the update must
        # not happen inside the kvstore.
        self.trainer, self.names = build_trainer(self.net, cfg.train, self.schedule,
                                                 self.kvstore, begin_num_update=begin,
                                                 update_on_kvstore=False if self.amp else None)
        if info is not None:
            if has_states and not self.distributed:
                meta = ckpt.load_trainer_states(self.trainer, self.resume_states, self.names)
                self.echo(f"resumed {self.resume_params}: iteration {self.start_iter}, "
                          f"optimizer update {meta['num_update']}, "
                          f"lr {self.schedule(meta['num_update'] + 1):.3g}")
            else:
                why = ("dist_* kvstores keep it on the parameter servers" if self.distributed
                       else "the checkpoint has none")
                self.echo(f"resumed {self.resume_params}: iteration {self.start_iter}; "
                          f"optimizer momenta start from zero ({why})")
        self.step_scale = self.num_workers if self.distributed else 1
        self._dist_updates = int(begin)
        if self.amp:
            from mxnet.contrib import amp
            amp.init_trainer(self.trainer)
        self.max_bad = max(1, int(cfg.train.max_bad_steps))

    # -- one iteration ----------------------------------------------------------------------
    def forward_backward(self, batch):
        """Forward and backward on one batch; returns (total loss, (S, 2) stage losses)
        as numpy, summed over devices."""
        from mxnet import autograd
        from mxnet.gluon.utils import split_and_load
        parts = [split_and_load(x, self.ctxs, even_split=True) for x in batch]
        totals, stages = [], []
        with autograd.record():
            for j in range(len(self.ctxs)):
                img, heat, hmask, paf, pmask = (p[j] for p in parts)
                outputs = self.net(img)
                t, s = self.loss(outputs, heat, hmask, paf, pmask)
                totals.append(t)
                stages.append(s)
        if self.amp:
            from mxnet.contrib import amp
            with amp.scale_loss(totals, self.trainer) as scaled:
                autograd.backward(scaled)
        else:
            autograd.backward(totals)
        total = float(sum(t.asnumpy().sum() for t in totals))
        per_stage = sum(s.asnumpy().astype(np.float64) for s in stages)
        return total, per_stage

    def num_update(self) -> int:
        """Optimizer updates so far: the lr-schedule position."""
        if self.distributed:
            # the servers' optimizer counts; the local copy never updates
            return self._dist_updates
        return int(self.trainer._optimizer.num_update)

    def _zero_grads(self):
        for p in self.net.collect_params().values():
            if p.grad_req != "null":
                for g in p.list_grad():
                    g[:] = 0

    # -- checkpoints --------------------------------------------------------------------------
    def provenance(self) -> dict:
        """What produced the weights saved now: the command, the config's hash, the code
        (mxpose version, git revision, dirty flag), the training DB (content hash, schema,
        split sizes), the devices and workers, and the wall time and images/s so far
        (summed over resumed runs)."""
        from ..provenance import code_revision, hash_json, library_versions
        if self._provenance_static is None:
            db = getattr(self.dataset, "db", None)
            self._provenance_static = {
                "command": list(self.opt.command) if self.opt.command is not None else None,
                "cwd": os.getcwd(),
                "config_sha256": hash_json(_to_plain(self.cfg)),
                "versions": library_versions(), "code": code_revision(),
                "db": None if db is None else {
                    "path": os.path.abspath(db.path), "content_hash": db.content_hash,
                    "schema_version": db.meta.get("schema_version"), "splits": db.splits(),
                    "split": self.cfg.data.train_split},
                "contexts": [str(c) for c in self.ctxs], "kvstore": str(self.opt.kvstore),
                "num_workers": self.num_workers,
                "loader_workers": int(self.cfg.data.num_workers)}
            prior = ((self.resume_info or {}).get("provenance") or {}).get("run") or {}
            self._provenance_prior = (float(prior.get("wall_seconds", 0.0)),
                                      int(prior.get("images", 0)))
        seconds = self._provenance_prior[0] + (time.perf_counter() - self._t_run
                                               if self._t_run is not None else 0.0)
        images = self._provenance_prior[1] + (self.iteration - self.start_iter) * self.batch \
            * self.num_workers
        return dict(self._provenance_static, run={
            "wall_seconds": round(seconds, 3), "images": images,
            "images_per_second": round(images / seconds, 3) if seconds > 0 else None})

    def save(self):
        import mxnet as mx
        mx.nd.waitall()
        n = self.num_update()
        info = {"num_update": n, "lr": self.schedule(n),
                "schedule": self.schedule.to_dict(),
                "data": {"seed": self.stream.seed, "samples_per_iteration": self.batch,
                         "next_sample": self.iteration * self.batch,
                         "num_workers": self.num_workers},
                "rng": {"numpy_global": _np_state()},
                "contexts": [str(c) for c in self.ctxs], "kvstore": str(self.opt.kvstore),
                "config": _to_plain(self.cfg), "provenance": self.provenance()}
        return ckpt.save_checkpoint(self.prefix, self.iteration, self.net, self.trainer,
                                    self.names, info)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train from the start iteration to ``train.max_iters``; returns a summary."""
        import mxnet as mx
        from ..config import save_config
        from ..data.loader import make_loader
        cfg = self.cfg
        max_iters = int(cfg.train.max_iters)
        save_every = max(0, int(cfg.train.save_every))
        log_every = max(1, int(cfg.train.log_every))
        writes = self.is_main and self.opt.save
        if writes:
            os.makedirs(os.path.dirname(os.path.abspath(self.prefix)), exist_ok=True)
            save_config(cfg, ckpt.config_path(self.prefix))
        jlog = JsonLinesLog(ckpt.log_path(self.prefix) if writes else None)
        jlog.write({"event": "start", "iteration": self.start_iter, "max_iters": max_iters,
                    "contexts": [str(c) for c in self.ctxs], "batch": self.batch,
                    "num_workers": self.num_workers, "prefix": self.prefix})
        loader = make_loader(self.dataset, self.batch, num_workers=int(cfg.data.num_workers),
                             sampler=self.stream, iterations=(self.start_iter, max_iters))
        bar = None
        if self.opt.progress and self.is_main:
            from tqdm import tqdm
            bar = tqdm(total=max_iters, initial=self.start_iter, unit="it", dynamic_ncols=True,
                       desc=os.path.basename(self.prefix))
        bad = skipped = 0
        saved: List[int] = []
        window = _Window()
        seen_images = 0
        t_run = self._t_run = time.perf_counter()
        t_prev = t_run
        last_loss = float("nan")
        try:
            for batch in loader:
                t_data = time.perf_counter()
                total, per_stage = self.forward_backward(batch)
                if not np.isfinite(total):
                    bad += 1
                    skipped += 1
                    msg = (f"iteration {self.iteration + 1}: non-finite loss {total}; batch "
                           f"skipped ({bad} in a row)")
                    warnings.warn(msg, RuntimeWarning, stacklevel=1)
                    jlog.write({"event": "skip", "iteration": self.iteration + 1,
                                "loss": None, "in_a_row": bad})
                    if bad >= self.max_bad:
                        raise TrainError(
                            f"stopped at iteration {self.iteration + 1}: {bad} non-finite "
                            f"losses in a row (train.max_bad_steps = {self.max_bad}); lower "
                            f"train.lr, set train.clip_gradient or check the data; resume "
                            f"from the last checkpoint with --resume")
                    if self.distributed:
                        self._zero_grads()     # every worker must push this step
                        self.trainer.step(self.step_scale)
                        self._dist_updates += 1
                else:
                    bad = 0
                    self.trainer.step(self.step_scale)
                    self._dist_updates += 1
                    last_loss = total
                    window.add(total, per_stage)
                self.iteration += 1
                seen_images += self.batch
                # The update runs asynchronously; finish it here so that its time is not
                # booked as data wait of the next iteration (the next forward needs the
                # new weights anyway).
                mx.nd.waitall()
                t_now = time.perf_counter()
                window.time(t_data - t_prev, t_now - t_prev, self.batch)
                self.timings.append((t_data - t_prev, t_now - t_prev))
                t_prev = t_now
                if bar is not None:
                    bar.update(1)
                    if window.n_time:
                        bar.set_postfix(loss=f"{last_loss:.4g}", ips=f"{window.ips():.1f}")
                if self.iteration % log_every == 0 or self.iteration == max_iters:
                    rec = window.record(self.iteration,
                                        self.schedule(self.num_update()))
                    rec["skipped"] = skipped
                    jlog.write(rec)
                    window = _Window()
                if writes and (self.iteration == max_iters or
                                     (save_every and self.iteration % save_every == 0)):
                    self.save()
                    saved.append(self.iteration)
                    jlog.write({"event": "checkpoint", "iteration": self.iteration})
        except KeyboardInterrupt:
            last = ckpt.latest_checkpoint(self.prefix)
            raise TrainError(f"interrupted at iteration {self.iteration}; resume with --resume"
                             + (f" (latest checkpoint: {last})" if last is not None else ""))
        finally:
            if bar is not None:
                bar.close()
            jlog.close()
            loader.close()
        mx.nd.waitall()
        if self.opt.final_params:
            path = self.opt.final_params.replace("{rank}", str(self.rank))
            ckpt.atomic_write(path, self.net.save_parameters)
        elapsed = time.perf_counter() - t_run
        return {"prefix": self.prefix, "start": self.start_iter, "iteration": self.iteration,
                "checkpoints": saved, "skipped": skipped,
                "unreadable_samples": loader.skipped, "last_loss": last_loss,
                "images": seen_images, "seconds": elapsed,
                "img_per_s": seen_images / elapsed if elapsed > 0 else float("nan"),
                "rank": self.rank, "num_workers": self.num_workers}


class _Window:
    """Averages over the iterations between two log lines."""

    def __init__(self):
        self.n = 0
        self.loss = 0.0
        self.stages = None
        self.n_time = 0
        self.wait = 0.0
        self.elapsed = 0.0
        self.images = 0

    def add(self, total, per_stage):
        self.n += 1
        self.loss += total
        self.stages = per_stage.copy() if self.stages is None else self.stages + per_stage

    def time(self, wait, elapsed, images):
        self.n_time += 1
        self.wait += wait
        self.elapsed += elapsed
        self.images += images

    def ips(self):
        return self.images / self.elapsed if self.elapsed > 0 else float("nan")

    def record(self, iteration, lr):
        n = max(self.n, 1)
        rec = {"iteration": int(iteration),
               "loss": self.loss / n if self.n else None,
               "stages": (self.stages / n).round(6).tolist() if self.stages is not None else None,
               "lr": lr, "img_per_s": round(self.ips(), 3),
               "data_wait": round(self.wait / self.elapsed, 4) if self.elapsed > 0 else None,
               "time": time.time()}
        return rec


def _np_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}


def _weights_summary(path, rep) -> str:
    def few(xs):
        xs = list(xs)
        return ", ".join(map(str, xs[:4])) + (f" ... (+{len(xs) - 4})" if len(xs) > 4 else "")
    s = f"weights from {path}: {len(rep['loaded'])} loaded"
    if rep["missing"]:
        s += f"; {len(rep['missing'])} missing (keep their init): {few(rep['missing'])}"
    if rep["unused"]:
        s += f"; {len(rep['unused'])} unused: {few(rep['unused'])}"
    if rep["mismatched"]:
        s += (f"; {len(rep['mismatched'])} of another shape: "
              f"{few(n for n, _, _ in rep['mismatched'])}")
    return s
