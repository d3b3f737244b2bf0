// node-postgres scenarios for the Portcullis end-to-end tests.
//
// Usage: PORTCULLIS_URI=postgresql://... node client.mjs SCENARIO
//
// Prints one JSON document with the scenario's results. tests/tests/node_pg.rs
// runs each scenario through the gateway and straight against PostgreSQL and
// compares the documents, so nothing here may legitimately differ between the
// two (no pids, no current times, no user names).

import pg from 'pg';

const uri = process.env.PORTCULLIS_URI;

function norm(v) {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return { bytes: v.toString('hex') };
  if (v instanceof Date) return { date: v.toISOString() };
  if (Array.isArray(v)) return v.map(norm);
  if (typeof v === 'object') {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = norm(v[k]);
    return o;
  }
  return v;
}

function result(r) {
  return {
    command: r.command,
    rowCount: r.rowCount,
    fields: r.fields.map((f) => [f.name, f.dataTypeID]),
    rows: r.rows.map(norm),
  };
}

function err(e) {
  return { code: e.code, severity: e.severity, message: e.message, detail: e.detail ?? null, position: e.position ?? null };
}

async function expectError(p) {
  try {
    await p;
    return { unexpected: 'success' };
  } catch (e) {
    return err(e);
  }
}

const scenarios = {
  async simple(c) {
    const out = {};
    out.one = result(await c.query('select 1 as one, \'x\'::text as x, null::int as n'));
    // No parameters: node-postgres uses the simple query protocol; several statements give several results.
    const multi = await c.query('create temp table t(id int, v text); insert into t values (1, \'a\'), (2, null); select * from t order by id');
    out.multi = multi.map(result);
    out.customers = result(await c.query('select * from customers order by id limit 25'));
    out.aggregate = result(await c.query('select status, count(*), sum(amount) from orders group by status order by status'));
    out.rowMode = (await c.query({ text: 'select 1 as a, 2 as a', rowMode: 'array' })).rows;
    out.big = (await c.query('select g from generate_series(1, 100000) g')).rowCount;
    return out;
  },

  async params(c) {
    const out = {};
    out.many = result(
      await c.query(
        'select $1::int4 as i, $2::int8 as l, $3::float8 as f, $4::numeric as n, $5::text as t, $6::bytea as b, ' +
          '$7::timestamptz as ts, $8::int4[] as ia, $9::text[] as ta, $10::jsonb as j, $11::int4 as nul, $12::bool as bo',
        [
          42,
          '9007199254740993',
          1.5,
          '-12345678901234567890.000123',
          "héllo\tworld 'q'",
          Buffer.from([0, 1, 254, 255]),
          new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)),
          [1, 2, 3],
          ['a', null, 'c,d'],
          JSON.stringify({ a: [1, 2, { b: null }] }),
          null,
          true,
        ],
      ),
    );
    out.any = result(await c.query('select id, email from customers where id = any($1) order by id', [[3, 1, 2]]));
    out.badParam = await expectError(c.query('select $1::int4', ['not a number']));
    out.tooFew = await expectError(c.query('select $1::int4, $2::int4', [1]));
    out.after = result(await c.query('select $1::text || $2::text as s', ['a', 'b']));
    return out;
  },

  async prepared(c) {
    const out = {};
    const rows = [];
    for (let i = 1; i <= 30; i++) {
      const r = await c.query({ name: 'order_by_id', text: 'select id, amount, status from orders where id = $1', values: [i] });
      rows.push(...r.rows.map(norm));
    }
    out.byId = rows;
    const counts = [];
    for (let i = 1; i <= 10; i++) {
      const r = await c.query({ name: 'orders_of', text: 'select count(*)::int as n from orders where customer_id = $1', values: [i] });
      counts.push(r.rows[0].n);
    }
    out.counts = counts;
    out.serverSide = result(await c.query("select name, parameter_types::text from pg_prepared_statements order by name"));
    // Reusing a name with different text is a client-side error in node-postgres; a
    // server-side error in a named statement must not break the connection.
    out.badPrepared = await expectError(c.query({ name: 'broken', text: 'select * from no_such_table where id = $1', values: [1] }));
    out.afterBad = result(await c.query({ name: 'order_by_id', text: 'select id, amount, status from orders where id = $1', values: [31] }));
    return out;
  },

  async errors(c) {
    const out = {};
    out.syntax = await expectError(c.query('selec 1'));
    out.undefinedTable = await expectError(c.query('select * from no_such_table'));
    out.undefinedColumn = await expectError(c.query('select nosuch from customers'));
    out.divZero = await expectError(c.query('select 1/0'));
    await c.query('create temp table u(id int primary key)');
    await c.query('insert into u values (1)');
    out.unique = await expectError(c.query('insert into u values (1)'));
    out.raise = await expectError(c.query("do $$ begin raise exception 'boom' using errcode = 'P0042', detail = 'dd'; end $$"));
    out.multiError = await expectError(c.query('select 1; select 1/0; select 2'));
    out.stillUsable = result(await c.query('select count(*)::int as n from customers'));
    const notices = [];
    c.on('notice', (n) => notices.push([n.severity, n.message]));
    await c.query("do $$ begin raise notice 'hello %', 7; end $$");
    out.notices = notices;
    return out;
  },

  async transactions(c) {
    const out = {};
    await c.query('create temp table t(x int)');
    await c.query('begin');
    await c.query('insert into t values ($1)', [1]);
    await c.query('savepoint s1');
    await c.query('insert into t values ($1)', [2]);
    await c.query('rollback to savepoint s1');
    await c.query('insert into t values ($1)', [3]);
    await c.query('commit');
    out.afterCommit = (await c.query('select x from t order by x')).rows.map((r) => r.x);
    await c.query('begin');
    await c.query('insert into t values (4)');
    await c.query('rollback');
    out.afterRollback = (await c.query('select count(*)::int as n from t')).rows[0].n;
    await c.query('begin');
    out.inFailed = await expectError(c.query('select 1/0'));
    out.aborted = await expectError(c.query('select 1'));
    await c.query('rollback');
    await c.query('begin isolation level serializable read only');
    // Temporary tables stay writable in read-only transactions; real ones do not.
    out.readOnly = await expectError(c.query("insert into orders (customer_id, amount, status) values (1, 1, 'paid')"));
    await c.query('rollback');
    out.final = (await c.query('select array_agg(x order by x) as xs from t')).rows[0].xs;
    return out;
  },

  async concurrent(c) {
    // node-postgres queues queries on one client; fire many at once.
    const ps = [];
    for (let i = 0; i < 200; i++) ps.push(c.query('select $1::int * 2 as v', [i]));
    const rs = await Promise.all(ps);
    return { values: rs.map((r) => r.rows[0].v) };
  },
};

const name = process.argv[2];
const client = new pg.Client({ connectionString: uri });
await client.connect();
try {
  const out = await scenarios[name](client);
  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
} finally {
  await client.end();
}
