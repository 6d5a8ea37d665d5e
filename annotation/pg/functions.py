"""The SQL functions of the rater hot path. Migrations create them (``install``) and drop them (``uninstall``).

ps_next_lease(): the rater queue's lease in one call. It returns the rater's live lease, or claims the best
open item and leases it. In a function each statement takes a fresh snapshot, so the lease insert counts
other raters' leases committed after the claim's snapshot (exact overlap), and the claim and the lease need
no transaction round trips of their own. ``ROWS 1`` tells the planner that it returns at most one row
(assuming 1,000, it hashed whole tables to join the lease with its item). The ORM's reference is
``annotation.services.queue_next``.

ps_store_annotation(): a submission under a live lease in one statement. It locks the item, confirms that the
rater's lease is still the live one that was read, and writes the annotation, the lease's status and the
item's count; no row comes back when any of that fails (the caller then takes the full path, which says
why). The ORM's reference is ``annotation.services._submission_store_locked``.
"""
from __future__ import annotations

from . import enabled

NEXT_LEASE = r"""
CREATE OR REPLACE FUNCTION ps_next_lease(
    p_project bigint, p_rater bigint, p_gold boolean, p_other_kind boolean, p_now timestamptz,
    p_expires timestamptz)
RETURNS SETOF annotation_assignment
LANGUAGE plpgsql VOLATILE ROWS 1 AS $$
DECLARE
    v_item record;
    v_full bigint[];
    v_gold boolean := p_gold;
    v_lease annotation_assignment;
BEGIN
    -- The rater's live lease, if there is one.
    RETURN QUERY
        SELECT a.* FROM annotation_assignment a
        WHERE a.rater_id = p_rater AND a.project_id = p_project AND a.status = 'leased' AND a.expires_at > p_now
        ORDER BY a.leased_at
        LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    -- Gold items or not, as asked; then the other kind when p_other_kind.
    FOR pass IN 1..(CASE WHEN p_other_kind THEN 2 ELSE 1 END) LOOP
        v_full := '{}';
        FOR attempt IN 1..50 LOOP
            -- The best open item (priority first) that this rater has not submitted or skipped, locked;
            -- rows other raters hold are skipped. The (item, rater) probe uses the unique index per
            -- candidate (as NOT EXISTS it became an anti-join over all of the rater's assignments).
            SELECT i.id, i.is_gold, i.annotations_count, i.overlap INTO v_item
            FROM annotation_item i
            WHERE i.project_id = p_project AND i.is_complete = false AND i.is_gold = v_gold
              AND NOT (i.id = ANY(v_full))
              AND COALESCE((SELECT a.status FROM annotation_assignment a
                            WHERE a.item_id = i.id AND a.rater_id = p_rater), 'leased') = 'leased'
              AND (v_gold OR i.annotations_count + (
                    SELECT count(*) FROM annotation_assignment a
                    WHERE a.item_id = i.id AND a.status = 'leased' AND a.expires_at > p_now) < i.overlap)
            ORDER BY i.priority DESC, i.id
            LIMIT 1
            FOR UPDATE OF i SKIP LOCKED;
            EXIT WHEN NOT FOUND;
            -- A new lease (or a fresh one over this rater's own expired lease), in a random display order
            -- (empty for an item without responses: a demonstration written from scratch), only if the live
            -- leases of the others, counted now, leave room. Gold items have no cap.
            INSERT INTO annotation_assignment AS a (item_id, rater_id, project_id, status, display_order, is_gold,
                                                    leased_at, expires_at, finished_at)
            SELECT v_item.id, p_rater, p_project, 'leased',
                   COALESCE((SELECT jsonb_agg(ir.response_id ORDER BY random())
                             FROM annotation_itemresponse ir WHERE ir.item_id = v_item.id), '[]'::jsonb),
                   v_item.is_gold, p_now, p_expires, NULL
            WHERE v_item.is_gold OR v_item.annotations_count + (
                SELECT count(*) FROM annotation_assignment o
                WHERE o.item_id = v_item.id AND o.status = 'leased' AND o.expires_at > p_now
                  AND o.rater_id <> p_rater) < v_item.overlap
            ON CONFLICT (item_id, rater_id) DO UPDATE SET
                status = EXCLUDED.status, display_order = EXCLUDED.display_order, leased_at = EXCLUDED.leased_at,
                expires_at = EXCLUDED.expires_at, finished_at = EXCLUDED.finished_at
            RETURNING a.* INTO v_lease;
            IF FOUND THEN
                RETURN NEXT v_lease;
                RETURN;
            END IF;
            v_full := v_full || v_item.id;  -- filled by a lease committed after the claim: the next one
        END LOOP;
        v_gold := NOT v_gold;
    END LOOP;
END
$$;
"""

STORE_ANNOTATION = r"""
CREATE OR REPLACE FUNCTION ps_store_annotation(
    p_item bigint, p_rater bigint, p_assignment bigint, p_payload jsonb, p_raw_payload jsonb, p_order jsonb,
    p_time_spent_ms integer, p_gold_correct boolean, p_key varchar, p_now timestamptz)
RETURNS SETOF annotation_annotation
LANGUAGE plpgsql VOLATILE ROWS 1 AS $$
DECLARE
    v_item record;
    v_annotation annotation_annotation;
BEGIN
    SELECT i.is_gold, i.overlap, i.annotations_count INTO v_item
    FROM annotation_item i WHERE i.id = p_item
    FOR UPDATE;
    PERFORM 1 FROM annotation_assignment a
    WHERE a.id = p_assignment AND a.item_id = p_item AND a.rater_id = p_rater AND a.status = 'leased'
      AND a.expires_at > p_now AND a.display_order = p_order;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- Nothing when the rater already has an annotation on the item or with this key.
    INSERT INTO annotation_annotation AS n (item_id, rater_id, assignment_id, source, payload, raw_payload,
                                            display_order, time_spent_ms, gold_correct, idempotency_key,
                                            created_at, updated_at)
    VALUES (p_item, p_rater, p_assignment, 'human', p_payload, p_raw_payload, p_order, p_time_spent_ms,
            p_gold_correct, p_key, p_now, p_now)
    ON CONFLICT DO NOTHING
    RETURNING n.* INTO v_annotation;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE annotation_assignment SET status = 'submitted', finished_at = p_now WHERE id = p_assignment;
    -- Exact: the item's row is locked.
    UPDATE annotation_item
    SET annotations_count = v_item.annotations_count + 1,
        is_complete = NOT v_item.is_gold AND v_item.annotations_count + 1 >= v_item.overlap
    WHERE id = p_item;
    RETURN NEXT v_annotation;
END
$$;
"""

SIGNATURES = {
    "ps_next_lease": "ps_next_lease(bigint, bigint, boolean, boolean, timestamptz, timestamptz)",
    "ps_store_annotation": ("ps_store_annotation(bigint, bigint, bigint, jsonb, jsonb, jsonb, integer, boolean, "
                            "varchar, timestamptz)"),
}
DEFINITIONS = {"ps_next_lease": NEXT_LEASE, "ps_store_annotation": STORE_ANNOTATION}


def install(schema_editor, name: str) -> None:
    """Create (or replace) the function ``name``; nothing on other databases."""
    if enabled():
        schema_editor.execute(DEFINITIONS[name])


def uninstall(schema_editor, name: str) -> None:
    if enabled():
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {SIGNATURES[name]}")
