"""``HUIZHEN_ENV=production`` refuses development settings with one line and exit 2; HTTP over TLS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.instance import HUIZHEN, Instance, instance  # noqa: F401  (fixture)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"HUIZHEN_GRAPHIQL": "true"}, "GraphiQL is on"),
        ({"HUIZHEN_TOKEN_TTL_SECONDS": "604800"}, "exceeds a day"),
        ({"HUIZHEN_HOST": "0.0.0.0"}, "no TLS"),
        ({"HUIZHEN_DICOM_PORT": "11112"}, "no DICOM peers"),
    ],
)
def test_production_refuses_development_settings(instance: Instance, env: dict[str, str], named: str) -> None:  # noqa: F811
    instance.env.update({"HUIZHEN_ENV": "production", **env})
    done = instance.run("serve", check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("huizhen: refusing to start with HUIZHEN_ENV=production")
    assert named in lines[0]


def test_production_with_tls_serves_https(instance: Instance, tmp_path: Path) -> None:  # noqa: F811
    instance.env.update(HUIZHEN_ENV="production", HUIZHEN_HOST="127.0.0.1")
    context = instance.use_tls(tmp_path)
    instance.start(verify=context)
    r = httpx.get(instance.base + "/healthz", verify=context, timeout=2)
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
        httpx.get(instance.base.replace("https://", "http://") + "/healthz", timeout=5).raise_for_status()
    # GraphiQL is off in production: the IDE page needs a token like everything else
    page = httpx.get(instance.base + "/graphql", headers={"Accept": "text/html"}, verify=context, timeout=5)
    assert page.status_code == 401
