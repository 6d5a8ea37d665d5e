"""Annotating through the real queue and submission services, as a rater in the browser would."""
from annotation import services
from annotation.models import Item

POSITIONS = "ABCDEFGHIJ"


def next_assignment(rater, project):
    assignment = services.queue_next(rater=rater, project=project)
    assert assignment is not None, "the queue had nothing for this rater"
    return assignment


def pick(rater, project, winner_text=None, *, choice=None, strength="better", criteria=None, time_spent_ms=1000):
    """Take the next item and prefer the response whose text is ``winner_text`` (or send ``choice``).

    The rater sees the responses in a random order; the letter sent is wherever the winner was shown.
    Returns (assignment, letter sent).
    """
    assignment = next_assignment(rater, project)
    texts = dict(Item.objects.get(pk=assignment.item_id).responses.values_list("id", "text"))
    shown = [texts[rid] for rid in assignment.display_order]
    if choice is None:
        choice = POSITIONS[shown.index(winner_text)]
    payload = {"choice": choice}
    if choice in ("A", "B") and project.config["strength"]:
        payload["strength"] = strength
    if criteria:
        payload["criteria"] = {name: POSITIONS[shown.index(t)] if t in shown else t for name, t in criteria.items()}
    services.annotation_submit(rater=rater, item_id=assignment.item_id, payload=payload, time_spent_ms=time_spent_ms)
    return assignment, choice


def rank(rater, project, groups_of_texts, *, time_spent_ms=1000):
    """Take the next item and rank it: ``groups_of_texts`` best first, an inner list is a tie."""
    assignment = next_assignment(rater, project)
    ids = {t: rid for rid, t in Item.objects.get(pk=assignment.item_id).responses.values_list("id", "text")}
    order = [[ids[t] for t in group] for group in groups_of_texts]
    services.annotation_submit(rater=rater, item_id=assignment.item_id, payload={"order": order},
                               time_spent_ms=time_spent_ms)
    return assignment


def rate(rater, project, overall, *, criteria=None, time_spent_ms=1000):
    assignment = next_assignment(rater, project)
    payload = {"overall": overall}
    if criteria:
        payload["criteria"] = criteria
    services.annotation_submit(rater=rater, item_id=assignment.item_id, payload=payload, time_spent_ms=time_spent_ms)
    return assignment
