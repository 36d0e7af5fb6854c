"""``HUIZHEN_ENV=production`` refuses development settings with one line and exit 2; HTTP over TLS."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trustme

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
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    instance.env.update(
        HUIZHEN_ENV="production", HUIZHEN_HOST="127.0.0.1", HUIZHEN_TLS_CERT_FILE=str(tmp_path / "cert.pem"),
        HUIZHEN_TLS_KEY_FILE=str(tmp_path / "key.pem"),
    )
    instance.base = instance.base.replace("http://", "https://")
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with instance.log.open("ab") as log:
        instance.proc = subprocess.Popen([*HUIZHEN, "serve"], cwd=instance.workdir, env=instance.env,
                                         stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        assert instance.proc.poll() is None, instance.log.read_text()[-2000:]
        try:
            r = httpx.get(instance.base + "/healthz", verify=context, timeout=2)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "server did not answer over TLS"
            time.sleep(0.2)
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
        httpx.get(instance.base.replace("https://", "http://") + "/healthz", timeout=5).raise_for_status()
    # GraphiQL is off in production: the IDE page needs a token like everything else
    page = httpx.get(instance.base + "/graphql", headers={"Accept": "text/html"}, verify=context, timeout=5)
    assert page.status_code == 401
