"""The suite's own rules (tests/conftest.py): only GPU tests may skip; full-data tests opt in."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
MARKERS = """
[pytest]
markers =
    gpu: needs a GPU
    shared_data: reads ../shared/data
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini(MARKERS)
    return pytester


def test_gpu_tests_may_skip_and_full_data_tests_wait_to_be_asked_for(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.gpu
        def test_cuda():
            pytest.skip("needs CuPy and a GPU")

        @pytest.mark.shared_data
        def test_full_mnist():
            pass

        def test_sample():
            pass
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1, skipped=1, deselected=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.slow
def test_any_other_skip_fails_the_session_under_xdist_too(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_fine="def test_ok():\n    pass\n",
        test_in_test="import pytest\n\ndef test_x():\n    pytest.skip('no data here')\n",
        test_skipif=(
            "import pytest\n\n@pytest.mark.skipif(True, reason='no folder there')\n"
            "def test_x():\n    pass\n"
        ),
        test_module="import pytest\n\npytest.importorskip('no_such_module_at_all')\n",
    )
    result = suite.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random(
        [
            "*skipped for a reason other than a missing GPU*",
            "test_in_test.py::test_x: no data here",
            "test_skipif.py::test_x: no folder there",
            "test_module.py: could not import 'no_such_module_at_all'*",
        ]
    )
