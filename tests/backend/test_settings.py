"""Server settings from the environment: the server's own variables, and the ones it leaves to others."""

from __future__ import annotations

import pytest

from backend.settings import ServerSettings


@pytest.mark.parametrize("variable", ["MESHSMITH_WORKERS", "MESHSMITH_NATIVE", "MESHSMITH_DEVICE",
                                      "MESHSMITH_KEEP_MEMORY", "MESHSMITH_EXPECT_NATIVE", "MESHSMITH_EXPECT_BPY",
                                      "MESHSMITH_EXPECT_DIST", "MESHSMITH_BACKEND_PYTHON"])
def test_variables_of_the_mesh_core_and_tests_do_not_stop_the_server(variable):
    settings = ServerSettings.from_env({variable: "1", "MESHSMITH_PORT": "9001"})
    assert settings.port == 9001


def test_a_misspelt_setting_is_named():
    with pytest.raises(ValueError, match="unknown setting MESHSMITH_PROT"):
        ServerSettings.from_env({"MESHSMITH_PROT": "9001"})
