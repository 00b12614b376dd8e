"""Plot the loss curves of a training log (``<prefix>-train.jsonl``) to a PNG.

    python tools/plot_log.py work/cpm_vgg19_mpii/cpm_vgg19-train.jsonl --out loss.png
"""
import argparse
import os
import sys


def _parser():
    p = argparse.ArgumentParser(
        prog="plot_log.py", description="Render the total and per-stage losses, the learning "
        "rate and the throughput of a tools/train.py JSON-lines log to a PNG.",
        epilog="Several logs may be given (one curve each, e.g. to compare runs). "
        "Iterations repeated by a resumed run are taken from the latest record.")
    p.add_argument("logs", nargs="+", metavar="LOG", help="<prefix>-train.jsonl file(s)")
    p.add_argument("--out", default="loss.png", help="PNG to write (default: %(default)s)")
    p.add_argument("--smooth", type=int, default=1, metavar="N",
                   help="moving average over N log records (default: %(default)s)")
    p.add_argument("--linear", action="store_true", help="linear loss axis (default: log)")
    return p


def _smooth(v, n):
    import numpy as np
    v = np.asarray(v, dtype=np.float64)
    if n <= 1 or v.size < n:
        return v
    return np.convolve(v, np.ones(n) / n, mode="valid")


def main(argv=None):
    args = _parser().parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from mxpose.train.logger import read_log

    runs = []
    for path in args.logs:
        if not os.path.isfile(path):
            print(f"plot_log.py: error: log {path} does not exist", file=sys.stderr)
            return 2
        recs = [r for r in read_log(path) if r.get("loss") is not None]
        if not recs:
            print(f"plot_log.py: error: {path} has no training records yet", file=sys.stderr)
            return 2
        runs.append((path, recs))

    fig, (ax_loss, ax_stage, ax_lr) = plt.subplots(3, 1, figsize=(9, 10), sharex=True)
    for path, recs in runs:
        label = os.path.basename(path).replace("-train.jsonl", "")
        it = np.array([r["iteration"] for r in recs])
        n = max(1, args.smooth)
        its = it[n - 1:] if n > 1 and it.size >= n else it
        ax_loss.plot(its, _smooth([r["loss"] for r in recs], n), label=label)
        st = [r.get("stages") for r in recs]
        if all(s is not None for s in st):
            st = np.asarray(st, dtype=np.float64)       # (T, S, 2)
            for s in range(st.shape[1]):
                for b, name in ((0, "PAF"), (1, "heat")):
                    ax_stage.plot(its, _smooth(st[:, s, b], n), ls="-" if b == 0 else "--",
                                  label=f"{label} stage {s + 1} {name}" if len(runs) > 1
                                  else f"stage {s + 1} {name}")
        ax_lr.plot(it, [r.get("lr") or np.nan for r in recs], label=f"{label} lr")
    for ax in (ax_loss, ax_stage):
        if not args.linear:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    ax_loss.set_ylabel("total loss")
    ax_loss.legend(fontsize=8)
    ax_stage.set_ylabel("per-stage loss")
    ax_stage.legend(fontsize=7, ncol=2)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("iteration")
    ax_lr.grid(alpha=0.3)
    ax_ips = ax_lr.twinx()
    for path, recs in runs:
        ax_ips.plot([r["iteration"] for r in recs], [r.get("img_per_s") or np.nan for r in recs],
                    color="gray", alpha=0.5, lw=0.8)
    ax_ips.set_ylabel("img/s (gray)")
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    total = sum(len(r) for _, r in runs)
    last = runs[0][1][-1]
    print(f"wrote {args.out}: {total} records from {len(runs)} log(s); "
          f"{os.path.basename(runs[0][0])} last iteration {last['iteration']} loss "
          f"{last['loss']:.5g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
