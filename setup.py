"""Build and install mxpose.

Cython sources live in cython_ext/<subpackage>/_<name>.pyx and are compiled into the
private module mxpose.<subpackage>._<name>. Build against the pinned numpy:

    pip install -c constraints.txt -r requirements.txt
    pip install --no-build-isolation -e .

Set MXPOSE_ONLY_EXT=substring to build only matching extensions (development).
"""
import glob
import os

from setuptools import Extension, find_packages, setup


def _version():
    ns = {}
    with open(os.path.join("mxpose", "_version.py")) as f:
        exec(f.read(), ns)
    return ns["__version__"]


def _extensions():
    import numpy
    from Cython.Build import cythonize

    only = os.environ.get("MXPOSE_ONLY_EXT", "")
    exts = []
    for src in sorted(glob.glob(os.path.join("cython_ext", "*", "_*.pyx"))):
        sub = os.path.basename(os.path.dirname(src))
        mod = os.path.splitext(os.path.basename(src))[0]
        name = f"mxpose.{sub}.{mod}"
        if only and only not in name:
            continue
        headers = sorted(glob.glob(os.path.join(os.path.dirname(src), "*.h")))
        exts.append(Extension(name, [src], include_dirs=[numpy.get_include()],
                              depends=headers, extra_compile_args=["-O3"],
                              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]))
    return cythonize(exts, language_level=3, annotate=False,
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "initializedcheck": False})


setup(
    name="mxpose",
    version=_version(),
    description="OpenPose-style bottom-up multi-person pose estimation on MXNet/Gluon",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mxpose", "mxpose.*"]),
    ext_modules=_extensions(),
    python_requires=">=3.8",
    # mxnet is deliberately absent: the CPU wheel `mxnet` and the GPU wheels `mxnet-cu1xx`
    # are different packages that overwrite each other. requirements.txt names the CPU one.
    install_requires=[
        "numpy>=1.16,<1.24",
        "scipy",
        "opencv-python-headless<4.9",
        "pycocotools",
        "Pillow",
        "easydict",
        "tqdm",
        "pyyaml",
    ],
    zip_safe=False,
)
