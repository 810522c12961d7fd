"""A deterministic e-commerce application database, for demos, tests and benchmarks.

``generate(url, scale=1)`` writes customers, products, orders, order_items, payments
and web_sessions to any SQLAlchemy URL (SQLite by default). Distributions are skewed
on purpose so the marts and the churn model have signal: a few heavy repeat buyers,
customers who churn and stop ordering, a November/December peak, refunds, failed
payments and anonymous sessions that never buy. ``simulate_day`` then plays one day
of application activity (inserts, updates with a newer ``updated_at``, hard deletes),
and ``write_live`` keeps writing small transactions, as a live application does, while
ingestion reads (``--live SECONDS``).

Run it with ``python -m platform_shared.demo_data --help``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

# The generated history ends here, so every run of the generator gives the same rows.
END = datetime(2026, 6, 30, 23, 0, 0)
START = END - timedelta(days=730)
CUSTOMERS_PER_SCALE = 2000
PRODUCTS_PER_SCALE = 200
_BATCH = 20_000

# Every updated_at is indexed, as in an application database that is read incrementally:
# the cursor's query (updated_at above the high-water mark) then reads only the changed
# rows instead of scanning the table.
md = sa.MetaData()
customers = sa.Table(
    "customers",
    md,
    sa.Column("customer_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(200), nullable=False),
    sa.Column("first_name", sa.String(100)),
    sa.Column("last_name", sa.String(100)),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("signup_channel", sa.String(20), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)
products = sa.Table(
    "products",
    md,
    sa.Column("product_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sku", sa.String(20), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("category", sa.String(50), nullable=False),
    sa.Column("price_cents", sa.Integer, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)
orders = sa.Table(
    "orders",
    md,
    sa.Column("order_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.customer_id"), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("total_cents", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)
order_items = sa.Table(
    "order_items",
    md,
    sa.Column("order_item_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.order_id"), nullable=False),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.product_id"), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price_cents", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)
payments = sa.Table(
    "payments",
    md,
    sa.Column("payment_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.order_id"), nullable=False),
    sa.Column("method", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("amount_cents", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)
web_sessions = sa.Table(
    "web_sessions",
    md,
    sa.Column("session_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.customer_id")),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.order_id")),
    sa.Column("traffic_source", sa.String(20), nullable=False),
    sa.Column("device", sa.String(20), nullable=False),
    sa.Column("pages_viewed", sa.Integer, nullable=False),
    sa.Column("funnel_step", sa.String(20), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
)

COUNTRIES = ["US"] * 8 + ["GB"] * 3 + ["DE"] * 3 + ["FR"] * 2 + ["NL", "ES", "IT", "CA", "AU"]
CHANNELS = ["organic", "paid_search", "social", "referral", "email"]
CATEGORIES = ["apparel", "home", "beauty", "electronics", "books", "toys"]
METHODS = ["card"] * 7 + ["paypal"] * 2 + ["gift_card", "bank_transfer"]
DEVICES = ["mobile"] * 6 + ["desktop"] * 3 + ["tablet"]
FUNNEL = ["visit", "product_view", "cart", "checkout", "purchase"]
FIRST = [
    "Ana",
    "Ben",
    "Chloé",
    "Dmitri",
    "Emma",
    "Farah",
    "Günter",
    "Hana",
    "Ivan",
    "José",
    "Kai",
    "Lena",
    "Mia",
    "Noah",
    "Olga",
    "Pál",
    "Quinn",
    "Rosa",
    "Sven",
    "Tomás",
]
LAST = [
    "Smith",
    "Müller",
    "García",
    "Rossi",
    "Nowak",
    "Dubois",
    "Jansen",
    "Silva",
    "Kim",
    "O'Brien",
    "Ødegård",
    "Lee",
    "Brown",
    "Novák",
    "Yılmaz",
    "Khan",
]


def _season(t: datetime) -> float:
    """Order-rate multiplier: a November/December peak and quieter weekends."""
    month = {11: 1.6, 12: 1.9, 1: 0.8, 2: 0.85}.get(t.month, 1.0)
    return month * (0.8 if t.weekday() >= 5 else 1.05)


def _ts(rng: random.Random, day: datetime) -> datetime:
    return day.replace(hour=0, minute=0, second=0) + timedelta(seconds=rng.randrange(86_400))


def _customer_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for cid in range(1, n + 1):
        # Growth: more signups later in the window (square-root of a uniform).
        created = START + timedelta(days=730 * math.sqrt(rng.random()) - 1e-6)
        created = _ts(rng, created)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        rows.append(
            dict(
                customer_id=cid,
                email=f"{first.lower()}.{cid}@example.com",
                first_name=first,
                last_name=last,
                country=rng.choice(COUNTRIES),
                signup_channel=rng.choice(CHANNELS),
                created_at=created,
                updated_at=created,
            )
        )
    return rows


def _product_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for pid in range(1, n + 1):
        created = START - timedelta(days=rng.randrange(1, 400))
        cat = CATEGORIES[pid % len(CATEGORIES)]
        rows.append(
            dict(
                product_id=pid,
                sku=f"SKU-{pid:06d}",
                name=f"{cat.title()} item {pid}",
                category=cat,
                price_cents=int(rng.lognormvariate(7.8, 0.7)) // 10 * 10 + 9,
                is_active=rng.random() > 0.08,
                created_at=created,
                updated_at=created,
            )
        )
    return rows


def _order_times(rng: random.Random, signup: datetime) -> list[datetime]:
    """Order times of one customer: a skewed rate until the customer churns."""
    rate = rng.lognormvariate(math.log(1 / 40), 0.9)  # orders per day
    churn = signup + timedelta(days=rng.expovariate(1 / 320))
    until = min(churn, END)
    times, t = [], signup + timedelta(hours=rng.uniform(0.1, 72))
    while True:
        t += timedelta(days=rng.expovariate(rate * 1.9))
        if t >= until:
            return times
        if rng.random() < _season(t) / 1.9:  # thinning to the seasonal rate
            times.append(t)


def generate_rows(*, scale: float = 1.0, seed: int = 42) -> dict[str, list[dict]]:
    """Build every table's rows in memory (deterministic for a scale and seed)."""
    rng = random.Random(seed)
    custs = _customer_rows(rng, max(10, int(CUSTOMERS_PER_SCALE * scale)))
    prods = _product_rows(rng, max(12, int(PRODUCTS_PER_SCALE * min(scale, 10))))
    weights = [1 / (i + 1) ** 1.1 for i in range(len(prods))]  # Zipf-like popularity
    placed = sorted((t, c["customer_id"]) for c in custs for t in _order_times(rng, c["created_at"]))
    out: dict[str, list[dict]] = {"orders": [], "order_items": [], "payments": [], "web_sessions": []}
    for oid, (t, cid) in enumerate(placed, start=1):
        _add_order(rng, out, oid, cid, t, prods, weights, END)
    _add_browsing(rng, out, custs, scale)
    return {"customers": custs, "products": prods, **out}


def _add_order(rng, out, oid, cid, t, prods, weights, now) -> None:
    age = (now - t).days
    if rng.random() < 0.04:
        status = "cancelled"
    elif age > 14:
        status = "returned" if rng.random() < 0.03 else "delivered"
    else:
        status = "shipped" if age > 2 else "placed"
    updated = min(now, t + timedelta(days=min(age, rng.randint(1, 10)), hours=rng.random()))
    total = 0
    for p in rng.choices(prods, weights, k=rng.choice([1, 1, 1, 2, 2, 3, 4])):
        qty = rng.choice([1, 1, 1, 1, 2, 2, 3])
        total += qty * p["price_cents"]
        out["order_items"].append(
            dict(
                order_item_id=len(out["order_items"]) + 1,
                order_id=oid,
                product_id=p["product_id"],
                quantity=qty,
                unit_price_cents=p["price_cents"],
                created_at=t,
                updated_at=t,
            )
        )
    out["orders"].append(
        dict(order_id=oid, customer_id=cid, status=status, total_cents=total, created_at=t, updated_at=updated)
    )
    pays = out["payments"]
    method = rng.choice(METHODS)
    if rng.random() < 0.03:  # a failed attempt, then a successful retry
        pays.append(
            dict(
                payment_id=len(pays) + 1,
                order_id=oid,
                method=method,
                status="failed",
                amount_cents=total,
                created_at=t,
                updated_at=t,
            )
        )
    if status != "cancelled":
        refunded = status == "returned" or rng.random() < 0.02
        paid_at = t + timedelta(minutes=rng.randint(1, 30))
        pays.append(
            dict(
                payment_id=len(pays) + 1,
                order_id=oid,
                method=method,
                status="refunded" if refunded else "succeeded",
                amount_cents=total,
                created_at=paid_at,
                updated_at=updated if refunded else paid_at,
            )
        )
    _add_session(rng, out, cid, oid, t - timedelta(minutes=rng.randint(3, 40)), "purchase")


def _add_session(rng, out, cid, oid, start, step) -> None:
    s = out["web_sessions"]
    s.append(
        dict(
            session_id=len(s) + 1,
            customer_id=cid,
            order_id=oid,
            traffic_source=rng.choice(CHANNELS),
            device=rng.choice(DEVICES),
            pages_viewed=1 + FUNNEL.index(step) * 2 + rng.randrange(4),
            funnel_step=step,
            started_at=start,
            created_at=start,
            updated_at=start,
        )
    )


def _add_browsing(rng, out, custs, scale) -> None:
    """Sessions that end before a purchase, by known customers and anonymous visitors."""
    n = int(len(out["orders"]) * 2.5)
    span = (END - START).total_seconds()
    for _ in range(n):
        start = START + timedelta(seconds=rng.random() * span)
        known = [c for c in rng.sample(custs, 3) if c["created_at"] <= start]
        cid = known[0]["customer_id"] if known and rng.random() < 0.6 else None
        step = rng.choices(FUNNEL[:4], [50, 30, 14, 6])[0]
        _add_session(rng, out, cid, None, start, step)
    out["web_sessions"].sort(key=lambda r: r["started_at"])
    for i, r in enumerate(out["web_sessions"], start=1):
        r["session_id"] = i


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    for i in range(0, len(rows), _BATCH):
        conn.execute(table.insert(), rows[i : i + _BATCH])


def generate(url: str, *, scale: float = 1.0, seed: int = 42) -> dict[str, int]:
    """Write a fresh demo database to ``url`` (its tables are dropped first).

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:////abs/path/app.db`` or ``postgresql://...``.
        scale: 1 gives about 80,000 rows; 100 gives millions.
        seed: the random seed.

    Returns:
        Row counts per table.

    Example:
        >>> generate("sqlite:////tmp/app.db", scale=0.05)["customers"]
        100
    """
    rows = generate_rows(scale=scale, seed=seed)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        md.drop_all(conn)
        md.create_all(conn)
        for table in md.sorted_tables:
            _insert(conn, table, rows[table.name])
    engine.dispose()
    return {name: len(r) for name, r in rows.items()}


def simulate_day(url: str, *, seed: int = 7) -> dict[str, int]:
    """Play one day of application activity after the newest row of an existing database.

    New customers and orders (with items, payments, sessions), status changes on recent
    orders and a few customer edits (all with a newer ``updated_at``), and hard deletes
    of a few cancelled orders and anonymous sessions.

    Returns:
        Counts of inserted, updated and deleted rows.
    """
    rng = random.Random(seed)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        now = conn.execute(sa.select(sa.func.max(orders.c.updated_at))).scalar_one()
        now = (now if isinstance(now, datetime) else datetime.fromisoformat(now)) + timedelta(days=1)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        counts = _day_inserts(conn, rng, day, now)
        counts |= _day_updates(conn, rng, now)
        counts |= _day_deletes(conn, rng)
    engine.dispose()
    return counts


def _max_id(conn, column) -> int:
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(column), 0))).scalar_one()


def _day_inserts(conn, rng, day, now) -> dict[str, int]:
    n_cust = _max_id(conn, customers.c.customer_id)
    new_custs = _customer_rows(rng, max(2, n_cust // 300))
    for c in new_custs:
        c["customer_id"] += n_cust
        c["email"] = f"{c['first_name'].lower()}.{c['customer_id']}@example.com"
        c["created_at"] = c["updated_at"] = _ts(rng, day)
    prods = [dict(r._mapping) for r in conn.execute(sa.select(products))]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(prods))]
    buyers = [c["customer_id"] for c in new_custs] + [rng.randint(1, n_cust) for _ in range(max(3, n_cust // 60))]
    out = {"orders": [], "order_items": [], "payments": [], "web_sessions": []}
    first_oid = _max_id(conn, orders.c.order_id) + 1
    for i, cid in enumerate(buyers):
        _add_order(rng, out, first_oid + i, cid, _ts(rng, day), prods, weights, now)
    for name, column in [
        ("order_items", order_items.c.order_item_id),
        ("payments", payments.c.payment_id),
        ("web_sessions", web_sessions.c.session_id),
    ]:
        offset = _max_id(conn, column)
        for r in out[name]:
            r[column.name] += offset
    _insert(conn, customers, new_custs)
    for name in ("orders", "order_items", "payments", "web_sessions"):
        _insert(conn, md.tables[name], out[name])
    return {"inserted": len(new_custs) + sum(len(v) for v in out.values())}


def _day_updates(conn, rng, now) -> dict[str, int]:
    recent = (
        conn.execute(sa.select(orders.c.order_id).where(orders.c.status.in_(["placed", "shipped"]))).scalars().all()
    )
    moved = rng.sample(recent, k=min(len(recent), max(1, len(recent) // 2)))
    for oid in moved:
        conn.execute(orders.update().where(orders.c.order_id == oid).values(status="delivered", updated_at=now))
    n_cust = _max_id(conn, customers.c.customer_id)
    edited = rng.sample(range(1, n_cust + 1), k=max(1, n_cust // 200))
    for cid in edited:
        conn.execute(
            customers.update()
            .where(customers.c.customer_id == cid)
            .values(country=rng.choice(COUNTRIES), updated_at=now)
        )
    return {"updated": len(moved) + len(edited)}


def _day_deletes(conn, rng, *, orders_at_most: int = 3, sessions_at_most: int = 2) -> dict[str, int]:
    cancelled = (
        conn.execute(sa.select(orders.c.order_id).where(orders.c.status == "cancelled").order_by(orders.c.order_id))
        .scalars()
        .all()
    )
    gone = rng.sample(cancelled, k=min(len(cancelled), orders_at_most))
    deleted = 0
    for table in (web_sessions, payments, order_items, orders):
        deleted += conn.execute(table.delete().where(table.c.order_id.in_(gone))).rowcount
    anon = (
        conn.execute(
            sa.select(web_sessions.c.session_id)
            .where(web_sessions.c.customer_id.is_(None))
            .order_by(web_sessions.c.session_id)
            .limit(50)
        )
        .scalars()
        .all()
    )
    drop = rng.sample(anon, k=min(len(anon), sessions_at_most))
    deleted += conn.execute(web_sessions.delete().where(web_sessions.c.session_id.in_(drop))).rowcount
    return {"deleted": deleted}


def write_live(url: str, *, seconds: float, seed: int = 11, pause: float = 0.005) -> dict[str, int]:
    """Write small transactions to every table for ``seconds``, as a live application does.

    Each transaction inserts a customer or an order (with its items, payment and
    session), moves an order's status or edits a customer (``updated_at`` set to the
    commit time, UTC), or hard-deletes a cancelled order or an anonymous session. A
    SQLite database is switched to WAL first, so readers and this writer do not block
    each other. Safe to kill at any moment: a transaction commits whole or not at all.

    Returns:
        Counts of the transactions of each kind.
    """
    rng = random.Random(seed)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("pragma journal_mode=wal")
    counts = {"inserted": 0, "updated": 0, "deleted": 0}
    prods = None
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        with engine.begin() as conn:
            now = datetime.now(UTC).replace(tzinfo=None)
            prods = prods or [dict(r._mapping) for r in conn.execute(sa.select(products))]
            kind = rng.choices(["inserted", "updated", "deleted"], [5, 4, 1])[0]
            counts[kind] += _live_change(conn, rng, kind, now, prods)
        time.sleep(pause)
    engine.dispose()
    return counts


def _live_change(conn, rng, kind: str, now: datetime, prods: list[dict]) -> int:
    if rng.random() < 0.1:  # the full table (products) changes too: a new, a repriced, a dropped product
        return _live_product_change(conn, rng, kind, now)
    if kind == "inserted":
        if rng.random() < 0.3:
            (c,) = _customer_rows(rng, 1)
            c["customer_id"] = _max_id(conn, customers.c.customer_id) + 1
            c["created_at"] = c["updated_at"] = now
            _insert(conn, customers, [c])
            return 1
        out = {"orders": [], "order_items": [], "payments": [], "web_sessions": []}
        cid = rng.randint(1, _max_id(conn, customers.c.customer_id))
        _add_order(
            rng,
            out,
            _max_id(conn, orders.c.order_id) + 1,
            cid,
            now,
            prods,
            [1 / (i + 1) ** 1.1 for i in range(len(prods))],
            now,
        )
        for name, column in [
            ("order_items", order_items.c.order_item_id),
            ("payments", payments.c.payment_id),
            ("web_sessions", web_sessions.c.session_id),
        ]:
            offset = _max_id(conn, column)
            for i, r in enumerate(out[name], start=1):
                r[column.name] = offset + i
        for name in ("orders", "order_items", "payments", "web_sessions"):
            for r in out[name]:
                r["updated_at"] = now
            _insert(conn, md.tables[name], out[name])
        return 1
    if kind == "updated":
        if rng.random() < 0.5:
            oid = rng.randint(1, _max_id(conn, orders.c.order_id))
            return conn.execute(
                orders.update()
                .where(orders.c.order_id == oid)
                .values(status=rng.choice(["shipped", "delivered"]), updated_at=now)
            ).rowcount
        cid = rng.randint(1, _max_id(conn, customers.c.customer_id))
        return conn.execute(
            customers.update()
            .where(customers.c.customer_id == cid)
            .values(country=rng.choice(COUNTRIES), updated_at=now)
        ).rowcount
    return _day_deletes(conn, rng, orders_at_most=1, sessions_at_most=1)["deleted"]


def _live_product_change(conn, rng, kind: str, now: datetime) -> int:
    if kind == "inserted":
        (p,) = _product_rows(rng, 1)
        p["product_id"] = _max_id(conn, products.c.product_id) + 1
        p["sku"] = f"SKU-{p['product_id']:06d}"
        p["created_at"] = p["updated_at"] = now
        _insert(conn, products, [p])
        return 1
    if kind == "updated":
        pid = rng.randint(1, _max_id(conn, products.c.product_id))
        price = rng.randrange(100, 50000, 10) + 9
        return conn.execute(
            products.update().where(products.c.product_id == pid).values(price_cents=price, updated_at=now)
        ).rowcount
    # Only a product no order line names goes (the application keeps the others).
    unsold = sa.select(products.c.product_id).where(
        ~sa.exists().where(order_items.c.product_id == products.c.product_id)
    )
    pid = conn.execute(unsold.order_by(products.c.product_id.desc()).limit(1)).scalar()
    return conn.execute(products.delete().where(products.c.product_id == pid)).rowcount if pid else 0


def main(argv: list[str] | None = None) -> None:
    from .settings import load_settings

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", default=None, help="SQLAlchemy URL (default: SOURCE_DATABASE_URL)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--simulate-day", action="store_true", help="play one day of activity on an existing database instead"
    )
    parser.add_argument(
        "--live", type=float, metavar="SECONDS", help="write small transactions to an existing database for SECONDS"
    )
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the SQLite file already exists")
    args = parser.parse_args(argv)
    url = args.url or load_settings().source_database_url
    if args.live:
        print(f"wrote live to {_safe(url)}: {write_live(url, seconds=args.live, seed=args.seed)}")
        return
    if args.simulate_day:
        print(f"simulated one day on {_safe(url)}: {simulate_day(url, seed=args.seed)}")
        return
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if args.if_missing and path.exists():
            print(f"{path} exists: keeping it (make seed to regenerate)")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
    counts = generate(url, scale=args.scale, seed=args.seed)
    print(f"wrote {sum(counts.values()):,} rows to {_safe(url)}: {counts}")


def _safe(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
