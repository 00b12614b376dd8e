"""Training throughput (img/s) of the zoo's networks, with and without the data pipeline.

    python tools/bench/bench_train.py                       # CPU, all models, 368x368, short
    python tools/bench/bench_train.py --gpus 0-3 --batch-size 10 --iters 20 --json bench.json

For each model, three measurements through the real training loop (forward, masked
multi-stage loss, backward, optimizer step):

* ``train+data``: batches from the real pipeline (DB decode, augmentation, target
  rendering in --num-workers loader processes);
* ``train only``: one cached batch served again and again (the pipeline excluded);
* ``data only``: the loader alone, no network.

``data_wait`` is the share of a train+data iteration spent waiting for the next batch:
above a few percent the loader is the bottleneck (raise --num-workers). The first
--warmup iterations (graph construction, memory allocation) are not timed.

Network variants, ``train only`` through the same trainer, in the same run:
``--act both`` adds the old activation form (ReLUs as the plain relu operator,
``model.kwargs.act='relu_op'``) beside the default (oneDNN's Activation); ``--reference``
adds, for cpm_vgg19, the same network written as plain Gluon (Conv2D(activation='relu'),
mxpose.model_zoo.plain_cpm). ``--rounds N`` alternates the variants' measurements N
times and keeps each one's best, so load on a shared machine hits them alike; the
summary gives each variant's img/s relative to the default form.
"""
import argparse
import os
import platform
import sys
import tempfile
import time

from mxpose.cli import use_all_cores

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _bench_common from anywhere
from _bench_common import act_forms, act_kwargs, write_json  # noqa: E402

use_all_cores()   # before mxnet is imported


def _parser():
    p = argparse.ArgumentParser(
        prog="bench_train.py", description="Measure training img/s of cpm_vgg19, "
        "paffirst_vgg19 (BODY_25's network) and lwpose_mobilenet with the data pipeline "
        "included and excluded.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--models", default="cpm_vgg19,paffirst_vgg19,lwpose_mobilenet",
                   help="comma-separated model names (default: %(default)s)")
    p.add_argument("--size", type=int, default=368, help="input size in px (default: 368)")
    dev = p.add_mutually_exclusive_group()
    dev.add_argument("--gpus", default=None, metavar="IDS", help="GPU ids, e.g. 0-3")
    dev.add_argument("--cpus", type=int, default=0, metavar="N", help="N CPU contexts")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="samples per device (default: 1 on CPU, 10 on GPU)")
    p.add_argument("--iters", type=int, default=3, metavar="N",
                   help="timed iterations per measurement (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, metavar="N",
                   help="untimed iterations first (default: %(default)s)")
    p.add_argument("--db", help="pose DB for the pipeline (default: a small synthetic DB "
                   "written to a temporary folder)")
    p.add_argument("--skeleton", default="openpose_coco18",
                   help="network layout (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=2, metavar="N",
                   help="loader processes (default: %(default)s)")
    p.add_argument("--act", default="activation", choices=("activation", "relu_op", "both"),
                   help="activation form: oneDNN's Activation (default), the old relu "
                        "operator, or both (the second as an extra 'train only' row)")
    p.add_argument("--reference", action="store_true",
                   help="also time cpm_vgg19 written as plain Gluon (train only)")
    p.add_argument("--rounds", type=int, default=1, metavar="N",
                   help="alternate the variants' 'train only' measurements N times, "
                        "keep the best of each (default: %(default)s)")
    p.add_argument("--no-data", action="store_true",
                   help="skip the pipeline measurements (train+data, data only)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    return p


class _CachedBatch:
    """Serves the first ``n`` samples of a dataset again and again (pipeline excluded)."""

    def __init__(self, dataset, n):
        self.items = [dataset[i % len(dataset)] for i in range(n)]

    def __len__(self):
        return len(self.items)

    def reseed(self, seed):
        pass

    def __getitem__(self, i):
        return self.items[i % len(self.items)]


def _variants(model, args):
    """``[(label, model name, model kwargs)]`` to time for ``model``, default first."""
    out = [(form, model, act_kwargs(model, form)) for form in act_forms(model, args.act)]
    if args.reference and model == "cpm_vgg19":
        from mxpose.model_zoo import register_model
        from mxpose.model_zoo.plain_cpm import NAME, PlainCPM
        register_model(NAME, PlainCPM)
        out.append(("plain_gluon", NAME, {}))
    return out


def _cfg(model, size, batch, db, skeleton, workers, iters, kwargs=None):
    from mxpose.config import default_config
    cfg = default_config()
    cfg.name = "bench"
    cfg.data.db = db
    cfg.data.skeleton = skeleton
    cfg.data.num_workers = workers
    cfg.data.sample_per = "image"
    cfg.aug.input_size = size
    cfg.model.name = model
    cfg.model.kwargs = dict(kwargs or {})
    cfg.train.update(batch_size=batch, max_iters=iters, save_every=0, log_every=10 ** 9,
                     optimizer="sgd", lr=1e-9, lr_steps=[], seed=0)
    return cfg


def _measure(cfg, ctxs, warmup, dataset=None):
    from mxpose.train import PoseTrainer, RunOptions
    t = PoseTrainer(cfg, RunOptions(contexts=ctxs, progress=False, save=False),
                    echo=lambda m: None, dataset=dataset)
    t.setup()
    t.run()
    tim = t.timings[warmup:]
    wait = sum(w for w, _ in tim)
    total = sum(e for _, e in tim)
    return {"img_per_s": len(tim) * t.batch / total, "s_per_iter": total / len(tim),
            "data_wait": wait / total, "batch": t.batch, "iters": len(tim)}, t.dataset


def _data_only(cfg, n_batches, batch):
    from mxpose.data.dataset import PoseDataset
    from mxpose.data.loader import make_loader
    ds = PoseDataset(cfg.data.db, cfg.data.train_split, config=cfg, train=True)
    loader = make_loader(ds, batch, num_workers=int(cfg.data.num_workers), seed=0,
                         iterations=(0, n_batches + 1))
    it = iter(loader)
    next(it)                                   # pool start-up, first batch
    t0 = time.perf_counter()
    n = 0
    for _ in it:
        n += 1
    dt = time.perf_counter() - t0
    return {"img_per_s": n * batch / dt, "s_per_iter": dt / max(n, 1), "batch": batch,
            "iters": n}


def main(argv=None):
    args = _parser().parse_args(argv)
    import mxnet as mx
    from mxpose.model_zoo import list_models
    from mxpose.runs import RunError, make_contexts, parse_gpus

    try:
        ctxs = make_contexts(parse_gpus(args.gpus), args.cpus)
    except RunError as e:
        print(f"bench_train.py: error: {e}", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in list_models()]
    if bad:
        print(f"bench_train.py: error: unknown model(s) {bad}; valid: {list_models()}",
              file=sys.stderr)
        return 2
    on_gpu = ctxs[0].device_type == "gpu"
    batch = args.batch_size or (10 if on_gpu else 1)
    iters = args.warmup + max(1, args.iters)
    tmp = None
    db = args.db
    if db is None:
        from mxpose.data.synthetic import make_synthetic_db
        tmp = tempfile.TemporaryDirectory(prefix="mxpose-bench-")
        db = os.path.join(tmp.name, "bench.db")
        n_img = max(8, batch * len(ctxs) * (iters + 1))
        print(f"writing a {n_img}-image synthetic DB for the pipeline ...", flush=True)
        make_synthetic_db(db, n_img, 0, seed=0, progress=False, min_size=320, max_size=640)
    elif not os.path.isfile(db):
        print(f"bench_train.py: error: DB {db} does not exist", file=sys.stderr)
        return 2

    if args.rounds < 1:
        print("bench_train.py: error: --rounds must be >= 1", file=sys.stderr)
        return 2
    results = []
    dev = ", ".join(map(str, ctxs))
    print(f"{len(ctxs)} device(s): {dev}; {batch}/device, {args.size}x{args.size}, "
          f"{args.iters} timed iterations after {args.warmup} warm-up; "
          f"{args.num_workers} loader processes")
    try:
        for model in models:
            variants = _variants(model, args)
            kw0 = variants[0][2]
            cfg = _cfg(model, args.size, batch, db, args.skeleton, args.num_workers, iters,
                       kw0)
            if not args.no_data:
                with_data, _ = _measure(cfg, ctxs, args.warmup)
                results.append(dict(model=model, variant=variants[0][0], mode="train+data",
                                    **with_data))
            from mxpose.data.dataset import PoseDataset
            ds = PoseDataset(db, cfg.data.train_split, config=cfg, train=True)
            cached = _CachedBatch(ds, batch * len(ctxs))
            best = {}
            for _ in range(args.rounds):
                for label, name, kw in variants:
                    cfg0 = _cfg(name, args.size, batch, db, args.skeleton, 0, iters, kw)
                    r, _ = _measure(cfg0, ctxs, args.warmup, dataset=cached)
                    if label not in best or r["img_per_s"] > best[label]["img_per_s"]:
                        best[label] = r
            for label, _, _ in variants:
                results.append(dict(model=model, variant=label, mode="train only",
                                    **best[label]))
        if not args.no_data:
            # enough batches that the loader's prefetch queue does not hide its cost
            data = _data_only(_cfg(models[0], args.size, batch, db, args.skeleton,
                                   args.num_workers, iters),
                              max(24, 8 * args.num_workers, args.iters), batch * len(ctxs))
            results.append(dict(model="-", variant="-", mode="data only", data_wait=None,
                                **data))
    finally:
        if tmp is not None:
            tmp.cleanup()

    print(f"\n{'model':<18}{'variant':<13}{'mode':<12}{'img/s':>9}{'s/iter':>9}"
          f"{'data wait':>11}")
    for r in results:
        w = "" if r.get("data_wait") is None else f"{100 * r['data_wait']:.1f} %"
        print(f"{r['model']:<18}{r['variant']:<13}{r['mode']:<12}{r['img_per_s']:>9.2f}"
              f"{r['s_per_iter']:>9.2f}{w:>11}")
    ratios = []
    for r in results:
        base = next((b for b in results if b["mode"] == "train only" and
                     b["model"] == r["model"]), None)
        if r["mode"] == "train only" and base is not r:
            ratios.append({"model": r["model"], "variant": r["variant"],
                           "baseline": base["variant"],
                           "speed_ratio": base["img_per_s"] / r["img_per_s"]})
    if ratios:
        print(f"\nsame-run ratios, train only (img/s of the default form / img/s of the "
              f"variant; > 1: the default is faster), best of {args.rounds} round(s):")
        for r in ratios:
            print(f"{r['model']:<18}{r['variant']:<13}{r['speed_ratio']:7.3f}")
    if args.json:
        out = {"devices": [str(c) for c in ctxs], "batch_per_device": batch,
               "size": args.size, "num_workers": args.num_workers, "warmup": args.warmup,
               "mxnet": mx.__version__, "cpu_count": os.cpu_count(),
               "platform": platform.platform(), "act": args.act, "rounds": args.rounds,
               "results": results, "ratios": ratios}
        return write_json(args.json, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
