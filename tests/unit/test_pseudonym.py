import base64
import hashlib
import stat
from pathlib import Path

import pytest

from huizhen.integration.errors import ConfigurationError
from huizhen.integration.pseudonym import Pseudonymizer, load_pseudonymizer


def test_stable_across_loads_and_distinct_per_patient(tmp_path: Path) -> None:
    first = load_pseudonymizer(tmp_path)
    again = load_pseudonymizer(tmp_path)
    assert first.of("p-001") == again.of("p-001")
    assert first.of("p-001") != first.of("p-002")
    assert first.of("患者-张三").startswith("HZP-") and len(first.of("x")) == 24
    assert stat.S_IMODE((tmp_path / "pseudonym.key").stat().st_mode) == 0o600


def test_keyed_another_key_gives_another_pseudonym(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert load_pseudonymizer(tmp_path / "a").of("p-001") != load_pseudonymizer(tmp_path / "b").of("p-001")


def test_not_reversible_by_enumerating_a_bare_hash() -> None:
    pseudo = Pseudonymizer(b"k" * 32)
    candidates = [f"p-{i:04d}" for i in range(2000)]
    target = pseudo.of("p-1234")
    bare = {hashlib.sha256(c.encode()).hexdigest(): c for c in candidates}
    bare_b32 = {"HZP-" + base64.b32encode(hashlib.sha256(c.encode()).digest()).decode()[:20]: c for c in candidates}
    assert target not in bare and target not in bare_b32
    assert hashlib.sha256(b"p-1234").hexdigest() not in target.lower()


def test_environment_key_and_bad_keys() -> None:
    key = base64.b64encode(b"e" * 32).decode()
    assert load_pseudonymizer(Path("/nonexistent"), key).of("p") == Pseudonymizer(b"e" * 32).of("p")
    with pytest.raises(ConfigurationError, match="base64"):
        load_pseudonymizer(Path("/nonexistent"), "not base64!")
    with pytest.raises(ConfigurationError, match="256 bits"):
        Pseudonymizer(b"short")
