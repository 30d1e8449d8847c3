-- test/extension-objects.sql: every object of the livewidget extension,
-- one line each, sorted, for comparing two installs (test/upgrade-check).
-- Covers what an upgrade script can get wrong: columns, defaults,
-- constraints, indexes, triggers, function definitions and settings,
-- privileges, comments, storage options and what pg_dump keeps.
\pset tuples_only on
\pset format unaligned
WITH ext AS (
    SELECT oid, extconfig, extcondition
    FROM pg_extension WHERE extname = 'livewidget'
), members AS (
    SELECT d.classid, d.objid
    FROM pg_depend AS d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
      AND d.deptype = 'e'
), rels AS (
    SELECT c.oid, c.relname, c.relkind
    FROM pg_class AS c JOIN members AS m
      ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
)
SELECT line FROM (
    SELECT format('relation %s kind %s options %s acl %s comment %s',
                  r.relname, r.relkind, c.reloptions, c.relacl,
                  obj_description(r.oid, 'pg_class')) AS line
    FROM rels AS r JOIN pg_class AS c ON c.oid = r.oid
    UNION ALL
    SELECT format('column %s.%s %s notnull %s default %s identity %s acl %s',
                  r.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                  a.attnotnull, pg_get_expr(ad.adbin, ad.adrelid),
                  a.attidentity, a.attacl)
    FROM rels AS r
    JOIN pg_attribute AS a ON a.attrelid = r.oid AND a.attnum > 0
                          AND NOT a.attisdropped
    LEFT JOIN pg_attrdef AS ad ON ad.adrelid = r.oid AND ad.adnum = a.attnum
    UNION ALL
    SELECT format('constraint %s.%s %s', r.relname, co.conname,
                  pg_get_constraintdef(co.oid))
    FROM rels AS r JOIN pg_constraint AS co ON co.conrelid = r.oid
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM rels AS r JOIN pg_index AS i ON i.indrelid = r.oid
    UNION ALL
    SELECT format('trigger %s', pg_get_triggerdef(t.oid))
    FROM rels AS r JOIN pg_trigger AS t ON t.tgrelid = r.oid
    WHERE NOT t.tgisinternal
    UNION ALL
    SELECT format('function %s acl %s comment %s %s',
                  p.oid::regprocedure, p.proacl,
                  obj_description(p.oid, 'pg_proc'), pg_get_functiondef(p.oid))
    FROM members AS m JOIN pg_proc AS p
      ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    UNION ALL
    SELECT format('other member %s',
                  pg_describe_object(m.classid, m.objid, 0))
    FROM members AS m
    WHERE m.classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass)
    UNION ALL
    SELECT format('dumped %s where %s', cfg.rel::regclass,
                  nullif(cfg.cond, ''))
    FROM ext, unnest(ext.extconfig, ext.extcondition) AS cfg(rel, cond)
    UNION ALL
    SELECT format('schema acl %s', n.nspacl)
    FROM pg_namespace AS n WHERE n.nspname = 'livewidget'
) AS all_lines
ORDER BY line COLLATE "C";
