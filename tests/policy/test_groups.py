"""Client groups: by address prefix and by device name (encrypted DNS)."""

from __future__ import annotations

from mamori.policy.groups import GroupClassifier, group_label, split_label
from mamori.resolver.acl import ClientTable
from mamori.resolver.active_policy import MAX_DEVICE_SLOTS, PolicySlots

GROUPS = [("kids", ["192.168.1.0/24"]), ("staff", ["10.0.0.0/8"]), ("phones", [])]
DEVICES = [("kids", ["tablet-1"]), ("staff", []), ("phones", ["tablet-1", "pixel"])]


def test_a_device_is_in_the_groups_of_its_address_and_of_its_name_in_config_order() -> None:
    c = GroupClassifier(GROUPS, DEVICES)
    assert c.groups_of("10.1.2.3") == ("staff",)
    assert c.groups_of("10.1.2.3", "tablet-1") == ("kids", "staff", "phones")
    assert c.groups_of("203.0.113.9", "pixel") == ("phones",)
    assert c.groups_of("203.0.113.9", "unknown") == ()


def test_label_carries_the_device_and_splits_back() -> None:
    assert group_label(("kids", "phones")) == "kids,phones"
    assert split_label(group_label(("kids", "phones"), "pixel")) == ("kids,phones", "pixel")
    assert split_label(group_label((), "pixel")) == ("", "pixel")
    assert split_label("kids") == ("kids", "")


def test_device_records_are_separate_from_the_address_record() -> None:
    table = ClientTable(("0.0.0.0/0",), 10.0, PolicySlots(), GroupClassifier(GROUPS, DEVICES))
    plain = table.lookup("10.1.2.3", 0.0)
    named = table.device("10.1.2.3", "pixel", 0.0)
    assert plain.slot.groups == ("staff",) and plain.slot.device == ""
    assert named.slot.groups == ("staff", "phones") and named.slot.device == "pixel"
    assert table.device("10.1.2.3", "pixel", 1.0) is named


def test_device_is_refused_when_its_address_is_not_allowed() -> None:
    table = ClientTable(("127.0.0.0/8",), 10.0, PolicySlots(), GroupClassifier(GROUPS, DEVICES))
    assert not table.device("10.1.2.3", "pixel", 0.0).allowed


def test_device_slots_are_bounded() -> None:
    slots = PolicySlots()
    for i in range(MAX_DEVICE_SLOTS + 5):
        slots.slot(("phones",), f"d{i}")
    assert len(slots.devices) == MAX_DEVICE_SLOTS
    assert slots.slot(("phones",), "one-more").device == ""
