"""The `bench` router: every suite runs through `python -m harness bench`, bad options exit with status 2."""
from harness.cli import main


def test_cli_turns_a_bad_option_into_exit_status_2(capsys):
    assert main(["bench", "--device", "cpu", "--dtype", "fp8"]) == 2
    assert "--dtype" in capsys.readouterr().err
