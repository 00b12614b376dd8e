"""Start a parameter-server training job: scheduler, servers and workers.

    python tools/launch.py -n 2 -s 1 -- python tools/train.py --kvstore dist_sync --cpus 1 ...

Every process runs the given command with MXNet's DMLC_* variables set; MXNet turns the
scheduler and server processes into its parameter-server roles when they import it, and
the workers train (each on its shard of the DB, see mxpose.data.loader). Without
--hostfile everything runs on this machine on 127.0.0.1 (a smoke test, or several GPUs
of one machine as separate workers); with --hostfile the workers and servers are started
over ssh, round-robin over the listed hosts, and the scheduler runs here.

Any failing process (non-zero exit) or the --timeout ends the whole job: all processes
are killed (a crashed server would otherwise leave its workers waiting forever).
"""
import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

_EPILOG = """\
Examples:
  # 2 CPU workers and 1 server on this machine (smoke test of dist_sync)
  python tools/launch.py -n 2 -s 1 -- python tools/train.py \\
      -c experiments/synthetic_lwpose.yaml --kvstore dist_sync --cpus 1 --max-iters 20
  # 4 machines with 4 GPUs each; run from a directory that has the same path on all of
  # them (shared file system), passwordless ssh to each host
  python tools/launch.py -n 4 -s 4 --hostfile hosts.txt -- python tools/train.py \\
      -c experiments/cpm_vgg19_coco.yaml --kvstore dist_device_sync --gpus 0-3

Host file: one host per line (name or IP, optionally user@host), '#' comments allowed.
Worker i and server i run on host i mod (number of hosts). The scheduler runs on this
machine and must be reachable from the hosts at --scheduler-host:--port.

Environment: DMLC_ROLE (scheduler/server/worker), DMLC_PS_ROOT_URI, DMLC_PS_ROOT_PORT,
DMLC_NUM_SERVER, DMLC_NUM_WORKER are set for each process; a PORT variable is removed
(MXNet's parameter server would bind every node to it and the job would hang). Extra
variables: --env NAME=VALUE (repeatable). Exit status: 0 when every worker succeeded,
the first failing process's status otherwise, 124 on --timeout.
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_hostfile(path: str):
    hosts = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                hosts.append(line.split()[0])
    return hosts


def _primary_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class _Proc:
    def __init__(self, role: str, index: int, argv, env, host=None, tag=True):
        self.role, self.index, self.host = role, index, host
        self.name = role if role == "scheduler" else f"{role} {index}"
        if host is None:
            full_env = env
            cmd = list(argv)
        else:
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())
                               if k.startswith(("DMLC_", "PS_", "MXNET_", "OMP_"))
                               or k in _Proc.extra_keys)
            remote = f"cd {shlex.quote(os.getcwd())} && env -u PORT {exports} {shlex.join(argv)}"
            cmd = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", host, remote]
            full_env = {k: v for k, v in os.environ.items() if k != "PORT"}
        out = subprocess.PIPE if tag else None
        self.p = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT
                                  if tag else None, start_new_session=True)
        self.thread = None
        if tag:
            self.thread = threading.Thread(target=self._pump, daemon=True)
            self.thread.start()

    extra_keys = set()

    def _pump(self):
        label = f"[{self.name}{'@' + self.host if self.host else ''}] ".encode()
        for line in iter(self.p.stdout.readline, b""):
            sys.stdout.buffer.write(label + line)
            sys.stdout.buffer.flush()

    def poll(self):
        return self.p.poll()

    def kill(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass


def launch(argv, num_workers: int, num_servers: int = 1, hosts=None, port: int = 0,
           scheduler_host: str = None, extra_env=None, timeout: float = 0, tag: bool = True,
           grace: float = 30.0) -> int:
    """Run the job; returns the exit status (see the module docstring)."""
    local = not hosts
    root = "127.0.0.1" if local else (scheduler_host or _primary_ip())
    port = port or free_port("127.0.0.1" if local else "")
    base = {k: v for k, v in os.environ.items() if k != "PORT"}
    base.update(extra_env or {})
    _Proc.extra_keys = set(extra_env or {})
    base.update(DMLC_PS_ROOT_URI=root, DMLC_PS_ROOT_PORT=str(port),
                DMLC_NUM_SERVER=str(num_servers), DMLC_NUM_WORKER=str(num_workers))
    if local:
        base["DMLC_NODE_HOST"] = "127.0.0.1"
    procs = []

    def start(role, i, host):
        env = dict(base, DMLC_ROLE=role)
        if role == "scheduler":
            env["DMLC_NODE_HOST"] = root if not local else "127.0.0.1"
        procs.append(_Proc(role, i, argv, env, None if role == "scheduler" else host, tag))

    def stop_all():
        for p in procs:
            p.kill(signal.SIGTERM)
        t_end = time.time() + 5
        while time.time() < t_end and any(p.poll() is None for p in procs):
            time.sleep(0.1)
        for p in procs:
            p.kill(signal.SIGKILL)
        for p in procs:
            try:
                p.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    try:
        start("scheduler", 0, None)
        for i in range(num_servers):
            start("server", i, None if local else hosts[i % len(hosts)])
        for i in range(num_workers):
            start("worker", i, None if local else hosts[i % len(hosts)])
        workers = [p for p in procs if p.role == "worker"]
        t0 = time.time()
        done_at = None
        while True:
            for p in procs:
                rc = p.poll()
                if rc is not None and rc != 0:
                    print(f"launch.py: {p.name} exited with status {rc}; stopping the job",
                          file=sys.stderr)
                    stop_all()
                    return rc if rc > 0 else 128 - rc
            if all(p.poll() == 0 for p in workers):
                done_at = done_at or time.time()
                if all(p.poll() is not None for p in procs):
                    return 0
                if time.time() - done_at > grace:
                    print("launch.py: workers finished but the scheduler/servers did not "
                          "exit; stopping them", file=sys.stderr)
                    stop_all()
                    return 0
            if timeout and time.time() - t0 > timeout:
                print(f"launch.py: timeout after {timeout:.0f} s; stopping the job",
                      file=sys.stderr)
                stop_all()
                return 124
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("launch.py: interrupted; stopping the job", file=sys.stderr)
        stop_all()
        return 130
    finally:
        for p in procs:
            if p.thread is not None:
                p.thread.join(timeout=2)


def _parser():
    p = argparse.ArgumentParser(
        prog="launch.py", description="Launch MXNet parameter-server training (dist_sync): "
        "a scheduler, servers and workers, locally or over ssh.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--num-workers", type=int, required=True, metavar="N",
                   help="number of worker processes (machines, for a cluster)")
    p.add_argument("-s", "--num-servers", type=int, default=None, metavar="N",
                   help="number of parameter servers (default: as many as workers)")
    p.add_argument("--hostfile", metavar="FILE",
                   help="hosts for workers and servers, started with ssh (default: all local)")
    p.add_argument("--port", type=int, default=0,
                   help="scheduler port (default: a free one)")
    p.add_argument("--scheduler-host", metavar="IP",
                   help="address the hosts reach this machine at (default: its primary IP)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment variable for every process (repeatable)")
    p.add_argument("--timeout", type=float, default=0, metavar="S",
                   help="kill the whole job after S seconds (default: no limit)")
    p.add_argument("--no-tag", action="store_true",
                   help="do not prefix output lines with the process role")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="the training command, after '--'")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("launch.py: error: no command given (put it after '--')", file=sys.stderr)
        return 2
    if args.num_workers < 1:
        print("launch.py: error: --num-workers must be >= 1", file=sys.stderr)
        return 2
    servers = args.num_servers if args.num_servers is not None else args.num_workers
    if servers < 1:
        print("launch.py: error: --num-servers must be >= 1", file=sys.stderr)
        return 2
    hosts = None
    if args.hostfile:
        if not os.path.isfile(args.hostfile):
            print(f"launch.py: error: host file {args.hostfile} does not exist", file=sys.stderr)
            return 2
        hosts = read_hostfile(args.hostfile)
        if not hosts:
            print(f"launch.py: error: host file {args.hostfile} lists no hosts", file=sys.stderr)
            return 2
    env = {}
    for item in args.env:
        if "=" not in item:
            print(f"launch.py: error: --env {item!r} must be NAME=VALUE", file=sys.stderr)
            return 2
        k, v = item.split("=", 1)
        env[k] = v
    where = f"{len(hosts)} host(s) from {args.hostfile}" if hosts else "127.0.0.1"
    print(f"launch.py: 1 scheduler, {servers} server(s), {args.num_workers} worker(s) on "
          f"{where}: {shlex.join(cmd)}", flush=True)
    t0 = time.time()
    rc = launch(cmd, args.num_workers, servers, hosts, args.port, args.scheduler_host, env,
                args.timeout, tag=not args.no_tag)
    print(f"launch.py: job {'finished' if rc == 0 else f'failed (status {rc})'} after "
          f"{time.time() - t0:.1f} s", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
