"""The `bench` router: every suite runs through `python -m harness bench`, bad options exit with status 2."""
from harness.cli import main


def test_cli_turns_a_bad_option_into_exit_status_2(capsys):
    assert main(["bench", "--device", "cpu", "--dtype", "fp8"]) == 2
    assert "--dtype" in capsys.readouterr().err


def test_a_size_that_would_hang_is_refused_in_one_line(capsys):
    assert main(["bench", "--device", "cpu", "--n", "10^100000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--n" in err and "2^40" in err
