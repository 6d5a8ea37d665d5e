"""PostgreSQL: ps_store_annotation(), a submission under a live lease in one statement.

It locks the item, confirms that the rater's lease is still the live one that was read, and writes the
annotation, the lease's status and the item's count; no row comes back when any of that fails (the caller
then takes the full path, which says why). Other databases take the ORM path in ``annotation_submit``.
"""
from django.db import migrations

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


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(STORE_ANNOTATION)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS ps_store_annotation(bigint, bigint, bigint, jsonb, jsonb, jsonb, "
                              "integer, boolean, varchar, timestamptz)")


class Migration(migrations.Migration):
    dependencies = [("annotation", "0003_next_lease_function")]

    operations = [migrations.RunPython(create, drop)]
