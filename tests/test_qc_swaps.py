"""The rule-made meaning changes the cross-encoder also learns (`augment.qc.swaps`)."""

from __future__ import annotations

import random

from augment.qc import swaps


def _swap(original: str, candidate: str) -> str | None:
    return swaps.swap(original, candidate, random.Random(0))


def test_roles_swap_everywhere_in_their_own_number_and_case():
    assert (_swap("Write a note from the tenant to the landlord.",
                  "Draft a note to my landlord from the tenants. Landlords hate surprises.")
            == "Draft a note to my tenant from the landlords. Tenants hate surprises.")
    assert (_swap("Why did Britain declare war on Germany?",
                  "What led Britain to declare war on Germany?")
            == "What led Germany to declare war on Britain?")


def test_no_swap_where_order_does_not_matter_or_nothing_is_shared():
    assert _swap("Compare Python and Go for a CLI.", "Compare Python and Go here.") is None
    assert _swap("Rank Brazil, Indonesia, Poland, Vietnam.",
                 "Order Brazil, Vietnam, Poland and Indonesia.") is None
    # a name the original does not have is not one of its parties
    assert _swap("Email the landlord.", "Email the landlord about Oslo and Bergen.") is None
    # one word of a longer name ("Harbor Dental") is not a party either
    assert _swap("Email my client, Harbor Dental, about Monday.",
                 "Tell my client Harbor Dental about Monday.") is None


def test_widen_asks_about_every_one_of_what_the_original_narrows_to():
    assert (swaps.widen("Add type hints to the parse_config function only.",
                        "Please add type hints to the parse_config function only.",
                        random.Random(0))
            == "Please add type hints to every function.")
    assert swaps.widen("Fix it.", "Fix this function.", random.Random(0)) is None


def test_rows_change_only_faithful_pairs_and_replay_for_a_seed():
    pairs = [{"original": "Write a note from the tenant to the landlord.",
              "candidate": "Draft a note to my landlord from the tenant.", "label": 0},
             {"original": "Write a note from the tenant to the landlord.",
              "candidate": "Draft a note to the landlord from the tenant's lawyer.", "label": 1},
             {"original": "Shorten the opening paragraph.",
              "candidate": "Make the opening paragraph shorter.", "label": 0}]
    made = swaps.rows(pairs, ("roles", "scope"), seed=3)
    assert made == swaps.rows(pairs, ("roles", "scope"), seed=3)
    assert [(r["candidate"], r["kind"], r["label"]) for r in made] == [
        ("Draft a note to my tenant from the landlord.", "flip_perspective", 1),
        ("Make every paragraph shorter.", "change_scope", 1)]
    assert swaps.rows(pairs, (), seed=3) == []
