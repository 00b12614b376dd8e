"""import mxpose sets the OpenMP thread default for library users (in a fresh process)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = ("import os, sys{pre}; import mxpose; "
         "print(os.environ.get('OMP_NUM_THREADS'), 'mxnet' in sys.modules)")


def _run(env_value=None, pre=""):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if env_value is not None:
        env["OMP_NUM_THREADS"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE.format(pre=pre)], env=env,
                         capture_output=True, text=True, check=True)
    value, mxnet_loaded = out.stdout.split()
    return value, mxnet_loaded == "True"


def _usable():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def test_unset_becomes_usable_cores_without_importing_mxnet():
    value, mxnet_loaded = _run()
    assert value == str(_usable())
    assert not mxnet_loaded          # the import stays cheap


def test_user_value_is_kept():
    assert _run("3")[0] == "3"


def test_too_late_after_mxnet_sets_nothing():
    # OpenMP already read the environment: setting it now would only mislead.
    assert _run(pre="; import mxnet")[0] == "None"


def test_tools_share_the_library_helper():
    from mxpose import _threads, cli
    assert cli.use_all_cores is _threads.use_all_cores
