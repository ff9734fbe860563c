"""Import discipline: the package and the certified layers must not pull in deepinv."""

import subprocess
import sys

import pytest


# each check runs in a fresh interpreter (what a user's first import does); they run side by side,
# since each spends a second or two importing torch
_FRESH_IMPORT_CHECKS = {
    **{f"{module} imports neither deepinv nor click":
       f"import sys, {module}; bad = [m for m in ('deepinv', 'click') if m in sys.modules]; print(bad); "
       "sys.exit(1 if bad else 0)" for module in ("pnp_stable", "pnp_stable.layers", "pnp_stable.verification")},
    "the solvers and their deepinv interop import no deepinv":
        "import sys, pnp_stable.solvers, pnp_stable.solvers.interop; sys.exit(1 if 'deepinv' in sys.modules else 0)",
    "the top level is lazy about torch": "import sys, pnp_stable; sys.exit(1 if 'torch' in sys.modules else 0)",
    # `ps.denoisers.load(...)` as users write it after `import pnp_stable as ps`, without importing
    # every subpackage up front; the command line stays out of the namespace
    "subpackages are attributes, the cli is not":
        ("import sys, pnp_stable as ps; assert 'pnp_stable.denoisers' not in sys.modules; "
         "assert callable(ps.denoisers.load) and callable(ps.operators.Blur) and callable(ps.solvers.solve); "
         "assert 'denoisers' in dir(ps)\n"
         "try:\n    ps.cli\nexcept AttributeError:\n    pass\nelse:\n    sys.exit(3)"),
}


def test_import_discipline_in_fresh_interpreters():
    running = {name: subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True) for name, code in _FRESH_IMPORT_CHECKS.items()}
    failed = {}
    for name, proc in running.items():
        output, _ = proc.communicate()
        if proc.returncode != 0:
            failed[name] = output
    assert not failed, failed


def test_lazy_attributes_resolve():
    import pnp_stable

    assert pnp_stable.Certificate.identity().averagedness == 0.0
    with pytest.raises(AttributeError):
        pnp_stable.does_not_exist  # noqa: B018
