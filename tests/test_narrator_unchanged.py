"""The narrator's fast "nothing changed" check agrees with its full observation.

``Narrator.after`` runs twice per burst; it used to copy the member and learner dicts each
time just to find that nothing changed. ``_unchanged`` compares field by field instead: a
field it forgot would silence that field's notes, so every field is changed here in turn.
"""

from types import SimpleNamespace

import pytest

from dkvs.driver.narrator import Narrator

FIELDS = {"role": "master", "epoch": 4, "master_id": "b", "pre_voting": True, "elections_started": 9,
          "transfer_target": "c", "transfer_campaigns": 2}


def fake_node():
    return SimpleNamespace(role="slave", epoch=3, master_id="a", members={"a": "http://a", "b": "http://b"},
                           pre_voting=False, elections_started=1, transfer_target=None,
                           transfer_campaigns=0, learners={})


def test_an_unchanged_node_is_unchanged_even_through_new_but_equal_dicts():
    node = fake_node()
    narrator = Narrator(node)
    node.members = dict(node.members)
    node.learners = {}
    assert narrator._unchanged(node)
    assert narrator._observe(node) == narrator._seen


@pytest.mark.parametrize("field", sorted(FIELDS) + ["members", "learners"])
def test_a_change_of_any_observed_field_is_seen(field):
    node = fake_node()
    narrator = Narrator(node)
    if field == "members":
        node.members["c"] = "http://c"  # changed in place, as the core does
    elif field == "learners":
        node.learners["b"] = "learner"
    else:
        setattr(node, field, FIELDS[field])
    assert not narrator._unchanged(node)
    assert narrator._observe(node) != narrator._seen
