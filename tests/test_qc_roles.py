"""Who does what to whom (`augment.qc.roles`): a reversed relation is caught, a reworded or
reordered one is not. Pure text rules, no model: these run in milliseconds."""

import pytest

from augment.qc.roles import relations, reversed_relations


@pytest.mark.parametrize("orig,cand,found", [
    # from A to B, with possessives leading to the party they own
    ("Write a letter from me to my daughter's coach about the schedule.",
     "Draft a letter from my daughter's coach to me about the schedule.", "speaker -> coach"),
    ("How do I move files from my laptop to a remote server?",
     "How do I pull files from a remote server to my laptop?", "speaker -> server"),
    # a message addressed to B is from the speaker; one from A with no "to" is to the speaker
    ("Draft an email to my landlord asking for the deposit back.",
     "Draft an email from my landlord asking me for the deposit back.", "speaker -> landlord"),
    # a verb of one group, subject before it and object after it
    ("Make a word problem where Aiko pays Ravi twice what he lent her.",
     "Make a word problem where Ravi pays Aiko twice what she lent him.", "name:Aiko -> name:Ravi"),
    ("My cousin owes me $250. How do I ask for it?",
     "I owe my cousin $250. How do I ask about it?", "cousin -> speaker"),
    ("Should the browser send the token to the API server in a header?",
     "Should the API server hand the token back to the browser in a header?", "server"),
    # issue #17's example from the demo cache: the perspective flipped
    ("Where can I see everything I've paid you over the last year?",
     "Where can I find everything you've paid me?", "speaker -> addressee (pay)"),
    # the speaker's role exchanged with another party's
    ("I'm a coach. How do I tell a player who skips practice that it matters?",
     "As a player, how do I tell a coach who skips practice that it matters?",
     "the speaker, coach, became player"),
])
def test_a_reversed_relation_is_found(orig, cand, found):
    got = reversed_relations(orig, cand)
    assert got and any(found in g for g in got), (got, relations(orig), relations(cand))


@pytest.mark.parametrize("orig,cand", [
    # the same relation in other words or another order
    ("Write a letter from me to my daughter's coach about the schedule.",
     "To my daughter's coach, from me: draft a letter about the schedule."),
    ("Draft an email to my landlord asking for the deposit back.",
     "Please write my landlord an email requesting the deposit back."),
    ("My cousin owes me $250. How do I ask for it?",
     "How can I ask my cousin for the $250 he owes me?"),
    # a passive names no subject: "paid by Ravi" states nothing to reverse
    ("Make a word problem where Aiko pays Ravi twice what he lent her.",
     "Make a word problem where Ravi is paid by Aiko twice what he lent her."),
    # "to" of an infinitive and a language are no parties
    ("Translate this message from Portuguese and draft a reply to the customer.",
     "A customer wrote this in Portuguese: translate it, then write a response to send back."),
    # a list is no direction; the same identity is no exchange
    ("Compare plans for students and teachers.", "Compare plans for teachers and students."),
    ("I'm a nurse. How do I explain a new medication to a patient?",
     "As a nurse, how should I explain a new medication to my patient?"),
])
def test_a_kept_relation_is_not_flagged(orig, cand):
    assert reversed_relations(orig, cand) == [], (relations(orig), relations(cand))


def test_a_reversal_is_a_rule_rejection(checker_rules):
    r = checker_rules.measure("Write a thank-you note from our team to a customer who wrote a "
                              "kind review.",
                              "Draft a thank-you note from a customer to our team for writing a "
                              "kind review.")
    assert not r["is_valid"] and any("roles reversed" in x for x in r["reasons"]), r["reasons"]


@pytest.fixture(scope="module")
def checker_rules():
    from dataclasses import replace

    from augment.quality import QualityChecker, QualityConfig
    return QualityChecker(replace(QualityConfig(), judge="none"))
