"""provision.apikeys: keys apply makes, recognised by a recorded hash (never the key), shown by size only."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ansible.module_utils.common.parameters import remove_values
from hypothesis import given
from hypothesis import strategies as st

from provision import apikeys
from provision.serving.settings import PLACEHOLDER_KEY

KEY_FILE = "/etc/gpuprov/serving/vllm.env"


def test_a_new_key_is_letters_and_digits_and_new_each_time() -> None:
    keys = {apikeys.new_key() for _ in range(20)}
    assert len(keys) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9]{43}", k) for k in keys)
    assert apikeys.key_content("abc", "VLLM_API_KEY") == "VLLM_API_KEY=abc\n"
    assert apikeys.key_content("abc", None) == "abc\n"


def test_only_the_key_file_gpuprov_wrote_is_recognised(tmp_path: Path) -> None:
    made = apikeys.key_content(apikeys.new_key(), "VLLM_API_KEY")
    placeholder = apikeys.key_content(PLACEHOLDER_KEY, "VLLM_API_KEY")
    assert not apikeys.made_by_gpuprov(tmp_path, KEY_FILE, made)  # nothing recorded yet
    apikeys.remember(tmp_path, KEY_FILE, made)
    assert apikeys.made_by_gpuprov(tmp_path, KEY_FILE, made)
    assert not apikeys.made_by_gpuprov(tmp_path, KEY_FILE, placeholder)
    assert not apikeys.made_by_gpuprov(tmp_path, KEY_FILE, "VLLM_API_KEY=written-by-hand\n")
    assert not apikeys.made_by_gpuprov(tmp_path, "/etc/gpuprov/serving/llama-cpp.env", made)  # another path
    assert not apikeys.made_by_gpuprov(tmp_path, KEY_FILE, None)
    # the record holds a hash, never the key
    record = (tmp_path / apikeys.KEYS_FILE).read_text()
    assert made.split("=", 1)[1].strip() not in record
    assert json.loads(record)["keys"] == {KEY_FILE: apikeys.fingerprint(made)}
    apikeys.remember(tmp_path, KEY_FILE, None)
    assert not apikeys.made_by_gpuprov(tmp_path, KEY_FILE, made)


def test_a_secret_is_described_by_its_size() -> None:
    assert apikeys.describe("VLLM_API_KEY=abc\n", changed=True) == "(secret, 17 bytes, changed)"
    assert apikeys.describe("k") == "(secret, 1 byte)"
    assert apikeys.describe(None) == "(absent)"


@given(
    key=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r="), min_size=4)
    .map(str.strip)
    .filter(lambda k: len(k) >= apikeys.MIN_HIDDEN),
    env=st.sampled_from(["VLLM_API_KEY", "API_KEY", None]),
)
def test_ansible_masks_every_hidden_value_of_a_key_file(key: str, env: str | None) -> None:
    content = apikeys.key_content(key, env)
    result = {"msg": f"wrote {content}", "diff": {"before": content, "after": f"x {key} y"}, "k": [key]}
    masked = json.dumps(remove_values(result, apikeys.hidden_values(content, None)), ensure_ascii=False)
    assert key not in masked
