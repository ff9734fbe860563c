"""What the command-line tests share: running the command in-process, and the shape of a user error."""

from click.testing import CliRunner

from pnp_stable.cli.main import main


def run(*args, env=None):
    """``pnp-stable ARGS`` in-process (arguments converted to strings); click's ``Result``."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def assert_user_error(result, fragment):
    """Exit code 2 and exactly one line, ``error: ...`` containing ``fragment``; no traceback and
    none of PyTorch's paragraphs on ``weights_only``."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output and "weights_only" not in result.output
