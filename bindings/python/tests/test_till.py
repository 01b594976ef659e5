"""The Python bindings against the real native library and a real
till-server process: records, defaults and enums crossing the boundary,
typed exceptions, a Python sync observer, the async sync, calls from many
threads, and tills syncing. What the Rust tests already prove (totals,
search ranking, conflict rules) is not re-proved here."""

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import till
from conftest import TENANT, cash, item


def test_records_defaults_and_enums_round_trip(open_till):
    t = open_till("S01", "R1", enrolled=False)
    c = t.create_customer(
        till.NewCustomer(
            name="  Asha   Rao ",
            phone="98765 43210",
            address=till.Address(city="Pune"),
            stage=till.Stage.LOYAL,
            tags=["vip", "tea"],
            birthday="1990-04-01",
        )
    )
    assert c.name == "Asha Rao"
    assert c.phone.e164 == "+919876543210" and c.phone.shared is False
    assert c.email is None
    assert (c.address.city, c.address.line1) == ("Pune", "")
    assert c.stage == till.Stage.LOYAL
    assert c.tags == ["tea", "vip"]
    assert c.birthday == "1990-04-01"
    assert t.customer(c.id) == c

    bill = t.open_bill(till.NewBill(customer_id=c.id, lines=[item("TEA", "Tea", 2, 18_000)]))
    assert bill.price_mode == till.PriceMode.INCLUSIVE and bill.lines[0].line_no == 1
    paid = t.pay(bill.id, [cash(50_000)])
    assert (paid.status, paid.change_due) == (till.BillStatus.PAID, 14_000)
    hit = t.search_bills(paid.number, 5)[0]
    assert hit.matched == till.BillMatch.NUMBER(kind=till.MatchKind.EXACT)
    assert t.customer_summary(c.id).visits == 1
    page = t.customer_bills(c.id, None, 1)
    assert [b.id for b in page.items] == [paid.id] and page.next is None
    assert '"name"' in t.history(c.id, None, 10).items[0].fields_json
    assert t.verify().ok


def test_a_day_of_sales_on_two_stores_syncs_through_the_server(open_till):
    north, south = open_till("S01", "T01"), open_till("S02", "T01")
    asha = north.find_or_create_by_phone("98450 11111", "Asha Rao")
    assert asha.created
    sale = north.sell(till.NewBill(customer_id=asha.customer.id, lines=[item("TEA", "Tea", 2, 18_000)]), [cash(40_000)])
    refund = north.refund(sale.id, [till.RefundLine(line_no=1, qty_milli=1_000)], [cash(18_000)])
    assert refund.kind == till.BillKind.REFUND
    south_sale = south.sell(till.NewBill(lines=[item("MUG", "Mug", 1, 25_000)]), [till.Tender(method=till.TenderMethod.CARD, amount=25_000, reference="AUTH-9")])
    assert (sale.number, south_sale.number) == ("S01-T01-000001", "S02-T01-000001")
    receipt = north.receipt(sale.id, till.ReceiptWidth.COLS48)
    assert "Acme S01" in receipt and all(len(line) <= 48 for line in receipt.splitlines())

    assert north.sync(till.silent_progress()).pushed >= 3
    south.sync(till.silent_progress())
    assert north.sync_status().pending_changes == 0
    assert south.customer(asha.customer.id).name == "Asha Rao"
    assert south.customer_bills(asha.customer.id, None, 10).items == []
    everywhere = south.customer_bills_everywhere(asha.customer.id, None, 10)
    assert {b.id for b in everywhere.items} == {sale.id, refund.id}
    assert all(b.store_id == "S01" and b.lines for b in everywhere.items)
    assert north.verify().ok and south.verify().ok


def test_a_search_with_typos(open_till):
    t = open_till("S01", "R2", enrolled=False)
    p = t.create_customer(till.NewCustomer(name="Priyanka Sharma", phone="99001 12345"))
    hits = t.search_customers("priyanka sharam", 10)
    assert hits[0].customer.id == p.id
    assert till.Match(field=till.MatchField.NAME, kind=till.MatchKind.FUZZY) in hits[0].matched
    assert t.search_customers("12345", 10)[0].matched[0].field == till.MatchField.PHONE


def test_a_stale_edit_raises_conflict_with_the_current_version(open_till):
    t = open_till("S01", "R3", enrolled=False)
    c = t.create_customer(till.NewCustomer(name="Meera Iyer"))
    t.update_customer(c.id, c.version, till.CustomerUpdate(notes="green tea"))
    with pytest.raises(till.TillError.Conflict) as e:
        t.update_customer(c.id, c.version, till.CustomerUpdate(name="Meera I."))
    assert (e.value.entity, e.value.id) == ("customer", c.id)
    assert (e.value.expected_version, e.value.current_version) == (1, 2)
    assert t.customer(c.id).name == "Meera Iyer"
    assert t.update_customer(c.id, e.value.current_version, till.CustomerUpdate(name="Meera I.")).version == 3


def test_errors_are_typed_exceptions_with_their_fields(open_till):
    t = open_till("S01", "R4", enrolled=False)
    with pytest.raises(till.TillError.Validation) as e:
        t.create_customer(till.NewCustomer(name="Bad Phone", phone="12"))
    assert e.value.field == "phone" and "12" not in str(e.value)
    with pytest.raises(till.TillError.Validation) as e:
        t.bill("not-a-uuid")
    assert e.value.field == "id"
    with pytest.raises(till.TillError.NotFound):
        t.customer("01890a5d-ac96-774b-bcce-b302099a8057")
    first = t.create_customer(till.NewCustomer(name="Anil Das", phone="98450 44444"))
    with pytest.raises(till.TillError.Duplicate) as e:
        t.create_customer(till.NewCustomer(name="Anil D", phone="9845044444"))
    assert e.value.existing_id == first.id
    voided = t.void_bill(t.open_bill(till.NewBill(lines=[item("A", "A", 1, 100)])).id)
    with pytest.raises(till.TillError.InvalidState) as e:
        t.pay(voided.id, [cash(100)])
    assert e.value.state == "voided"
    # Every variant is a TillError.
    assert issubclass(till.TillError.Storage, till.TillError)
    assert issubclass(till.TillError.StorageFull, till.TillError)


def test_sync_errors_are_auth_and_network(open_till, server, tmp_path):
    t = open_till("S01", "R5")
    t.sync(till.silent_progress())
    server.admin("device", "revoke", "--tenant", TENANT, "--store", "S01", "R5")
    with pytest.raises(till.TillError.Auth) as e:
        t.sync(till.silent_progress())
    assert e.value.code == "device_revoked"

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = till.TillStore.open(
        till.TillConfig(
            database_path=str(tmp_path / "closed.db"), tenant=TENANT, store_id="S01", device_id="R6",
            default_region="IN", currency="INR", store_name="Acme",
            server_url=f"http://127.0.0.1:{port}", device_token="token", sync_max_attempts=1,
        )
    )
    with pytest.raises(till.TillError.Network):
        closed.sync(till.silent_progress())
    assert closed.sync_status().last_error is not None


class Recorder(till.SyncProgress):
    """A Python implementation of the Rust trait, called from Rust during a sync."""

    def __init__(self):
        self.events = []
        self.threads = set()

    def phase(self, phase):
        self.threads.add(threading.get_ident())
        self.events.append(("phase", phase))

    def pushed(self, acknowledged, quarantined):
        self.events.append(("pushed", acknowledged, quarantined))

    def pulled(self, changes, cursor):
        self.events.append(("pulled", changes, cursor))

    def retrying(self, attempt, delay_ms, cause):
        self.events.append(("retrying", attempt))


def test_the_async_sync_reports_progress_to_a_python_observer(open_till):
    t = open_till("S01", "R7")
    t.create_customer(till.NewCustomer(name="Kavya Nair", phone="98450 55555"))
    recorder = Recorder()
    summary = asyncio.run(t.sync_async(recorder))
    assert summary.pushed >= 1
    phases = [e[1] for e in recorder.events if e[0] == "phase"]
    # A new till pushes, then starts from a snapshot (its customer in it), then pulls.
    assert phases == [
        till.SyncPhase.PUSH,
        till.SyncPhase.BOOTSTRAP,
        till.SyncPhase.PULL,
        till.SyncPhase.FINISH,
    ]
    assert summary.bootstrapped >= 1
    assert ("pushed", summary.pushed, 0) in recorder.events
    assert any(e[0] == "pulled" and e[2] == summary.cursor for e in recorder.events)


def test_sales_from_many_threads_while_another_syncs(open_till):
    t = open_till("S01", "T09")

    def sell(n):
        c = t.find_or_create_by_phone(f"98450 6{n % 4}000", "Thread Customer").customer
        return t.sell(till.NewBill(customer_id=c.id, lines=[item("TEA", "Tea", 1, 1_000)]), [cash(1_000)]).number

    with ThreadPoolExecutor(max_workers=5) as pool:
        syncing = pool.submit(t.sync, till.silent_progress())
        numbers = list(pool.map(sell, range(60)))
        syncing.result(timeout=120)
    assert sorted(numbers) == [f"S01-T09-{n:06d}" for n in range(1, 61)]
    # The sync pulls the tenant's other customers too: count this test's.
    mine = [c for c in t.list_customers(till.CustomerQuery(limit=200)).items if c.name == "Thread Customer"]
    assert len(mine) == 4
    t.sync(till.silent_progress())
    assert t.sync_status().pending_changes == 0
    assert t.verify().ok


def test_merge_server_dedup_leaves_one_live_customer_after_two_tills_create_the_same_phone_offline(open_till):
    a, b = open_till("S01", "M1"), open_till("S01", "M2")
    on_a = a.find_or_create_by_phone("98450 77777", "Deepa Menon").customer
    on_b = b.create_customer(till.NewCustomer(name="Deepa M", phone="+91 98450 77777"))
    assert on_a.id != on_b.id
    for _ in range(2):
        a.sync(till.silent_progress())
        b.sync(till.silent_progress())
    survivors = set()
    for t in (a, b):
        live = t.search_customers("9845077777", 10)
        assert len(live) == 1, "one live customer holds the phone"
        assert t.customer(on_a.id).id == t.customer(on_b.id).id, "both ids lead to the survivor"
        survivors.add(live[0].customer.id)
    assert len(survivors) == 1, "both tills agree on the survivor"
