"""Import discipline: the package and the certified layers must not pull in deepinv."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["pnp_stable", "pnp_stable.layers", "pnp_stable.verification"])
def test_module_does_not_import_deepinv(module):
    code = f"import sys, {module}; bad = [m for m in ('deepinv', 'click') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_top_level_is_lazy_about_torch():
    code = "import sys, pnp_stable; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_lazy_attributes_resolve():
    import pnp_stable

    assert pnp_stable.Certificate.identity().averagedness == 0.0
    with pytest.raises(AttributeError):
        pnp_stable.does_not_exist  # noqa: B018


def test_subpackages_are_attributes_but_not_the_cli():
    # `ps.denoisers.load(...)` as users write it after `import pnp_stable as ps`, without importing
    # every subpackage up front; the command line stays out of the namespace
    code = ("import sys, pnp_stable as ps; assert 'pnp_stable.denoisers' not in sys.modules; "
            "assert callable(ps.denoisers.load) and callable(ps.operators.Blur) and callable(ps.solvers.solve); "
            "assert 'denoisers' in dir(ps)\n"
            "try:\n    ps.cli\nexcept AttributeError:\n    pass\nelse:\n    sys.exit(3)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
