// The Kotlin bindings against the real native library and a real
// till-server process: records, defaults and enums crossing the boundary,
// typed exceptions, a Kotlin sync observer, the suspending sync, calls from
// many JVM threads, and a day of two stores syncing. What the Rust tests
// already prove (totals, search ranking, conflict rules) is not re-proved.

import java.util.Collections
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import till.*

fun main() = runTests(
    listOf(
        "records, defaults and enums round-trip" to ::recordsRoundTrip,
        "a day of sales on two stores side by side, synced through a real server" to ::dayOfSalesOnTwoStores,
        "a search with typos finds the customer and says how" to ::searchWithTypos,
        "a stale edit throws Conflict carrying the current version" to ::conflictingEdit,
        "errors arrive as typed exceptions with their fields" to ::typedErrors,
        "sync errors arrive as Auth and Network exceptions" to ::syncErrors,
        "the suspending sync reports progress to a Kotlin observer" to ::asyncSyncWithObserver,
        "sales from many threads while another thread syncs" to ::threads,
        "merge (server dedup): one live customer after two tills create the same phone offline" to ::mergeOfSamePhoneCreatedOffline,
    ),
)

fun recordsRoundTrip() {
    val till = Env.till("S01", "R1", enrolled = false)
    val created = till.createCustomer(
        NewCustomer(
            name = "  Asha   Rao ",
            phone = "98765 43210",
            email = "Asha@Example.com",
            address = Address(city = "Pune"),
            stage = Stage.LOYAL,
            tags = listOf("vip", "tea"),
            birthday = "1990-04-01",
        ),
    )
    eq(created.name, "Asha Rao", "name is normalised")
    eq(created.phone?.e164, "+919876543210", "phone")
    eq(created.email?.canonical, "asha@example.com", "email")
    eq(created.address.city, "Pune", "address")
    eq(created.address.line1, "", "address default")
    eq(created.stage, Stage.LOYAL, "stage")
    eq(created.tags, listOf("tea", "vip"), "tags")
    eq(created.birthday, "1990-04-01", "birthday")
    eq(created.version, 1L, "version")
    check(created.mergedInto == null && created.deletedAtMs == null)
    eq(till.customer(created.id), created, "read back")

    val minimal = till.createCustomer(NewCustomer(name = "Walk In Regular"))
    eq(minimal.phone, null, "no phone")
    eq(minimal.stage, Stage.NEW, "default stage")

    val bill = till.openBill(NewBill(customerId = created.id, lines = listOf(item("TEA", "Tea", 2, 18_000, 500u))))
    eq(bill.status, BillStatus.OPEN, "open")
    eq(bill.priceMode, PriceMode.INCLUSIVE, "default price mode")
    eq(bill.lines.single().lineNo, 1u, "line number")
    val paid = till.pay(bill.id, listOf(cash(50_000)))
    eq(paid.payments.single().method, TenderMethod.CASH, "payment method")
    eq(paid.changeDue, 14_000L, "change")

    val page1 = till.listCustomers(CustomerQuery(limit = 1u))
    eq(page1.items.size, 1, "page size")
    val page2 = till.listCustomers(CustomerQuery(limit = 1u, cursor = page1.next))
    check(page2.items.single().id != page1.items.single().id) { "the cursor moves on" }
    eq(till.listCustomers(CustomerQuery(tag = "vip")).items.map { it.id }, listOf(created.id), "tag filter")

    val history = till.history(created.id, null, 10u)
    eq(history.items.first().op, "create", "history")
    check(history.items.first().fieldsJson.contains("\"name\"")) { "fields as JSON" }
    check(till.exportCustomer(created.id).contains(created.id)) { "export names the customer" }
    val report = till.importCustomersCsv("name,phone\nRavi Kumar,91234 56789\n,bad\n")
    eq(report.imported, 1uL, "imported")
    eq(report.rejected.single().line, 3uL, "rejected line")
    check(till.verify().ok)
}

fun dayOfSalesOnTwoStores() {
    val north = Env.till("S01", "T01")
    val south = Env.till("S02", "T01")
    // Side by side in one process: each till its own file, numbers and chain.
    val asha = north.findOrCreateByPhone("98450 11111", "Asha Rao")
    check(asha.created)
    eq(north.findOrCreateByPhone("+91 98450-11111", "Someone Else").customer.id, asha.customer.id, "same phone, any format")
    val ravi = south.findOrCreateByPhone("98450 22222", "Ravi Kumar").customer

    val sale1 = north.sell(NewBill(customerId = asha.customer.id, lines = listOf(item("TEA", "Assam Tea", 2, 18_000))), listOf(cash(40_000)))
    val open = north.openBill(NewBill(customerId = asha.customer.id))
    north.addLine(open.id, item("MUG", "Mug", 1, 25_000))
    north.addLine(open.id, item("SPOON", "Spoon", 3, 2_000))
    north.removeLine(open.id, 2u)
    north.setBillDiscount(open.id, 5_000)
    val sale2 = north.pay(open.id, listOf(Tender(TenderMethod.CARD, 20_000, "AUTH-1")))
    val refund = north.refund(sale1.id, listOf(RefundLine(1u, 1_000)), listOf(cash(18_000)))
    val voided = north.voidBill(north.openBill(NewBill(lines = listOf(item("X", "X", 1, 100)))).id)
    eq(refund.kind, BillKind.REFUND, "refund kind")
    eq(north.bill(sale1.id).status, BillStatus.PARTLY_REFUNDED, "sale partly refunded")
    eq(voided.status, BillStatus.VOIDED, "voided")
    eq(sale1.number, "S01-T01-000001", "numbers per device")
    eq(south.sell(NewBill(customerId = ravi.id, lines = listOf(item("TEA", "Tea", 1, 9_000))), listOf(cash(9_000))).number,
        "S02-T01-000001", "the other store numbers its own bills")

    val summary = north.customerSummary(asha.customer.id)
    eq(summary.visits, 2L, "visits")
    eq(summary.totalSpent, 36_000L + 20_000L - 18_000L, "spent net of refunds")
    eq(summary.currency, "INR", "currency")
    val receipt = north.receipt(sale2.id, ReceiptWidth.COLS32)
    check(receipt.contains("Acme S01") && receipt.contains(sale2.number)) { "receipt text" }
    check(receipt.lines().all { it.length <= 32 }) { "32 columns" }
    val bills = north.customerBills(asha.customer.id, null, 2u)
    eq(bills.items.map { it.id }, listOf(refund.id, sale2.id), "newest first")
    eq(north.customerBills(asha.customer.id, bills.next, 2u).items.map { it.id }, listOf(sale1.id), "next page")
    eq(north.searchBills(sale2.number.takeLast(2), 5u).first().matched, BillMatch.Number(MatchKind.PARTIAL), "bill by trailing digits")

    eq(north.syncStatus().pendingChanges > 0, true, "offline sales wait in the outbox")
    val pushed = north.sync(silentProgress())
    check(pushed.pushed > 0uL) { "pushed $pushed" }
    south.sync(silentProgress())
    north.sync(silentProgress())
    eq(north.syncStatus().pendingChanges, 0L, "outbox drained")
    check(north.syncStatus().lastSyncAtMs != null) { "last sync recorded" }
    // Customers are the tenant's: each store now finds the other's customer.
    eq(south.customer(asha.customer.id).name, "Asha Rao", "pulled customer")
    eq(north.searchCustomers("98450 22222", 5u).single().customer.id, ravi.id, "pulled and searchable")
    // South holds none of north's bills; the server has them all.
    eq(south.customerBills(asha.customer.id, null, 10u).items.size, 0, "other stores' bills stay there")
    val everywhere = south.customerBillsEverywhere(asha.customer.id, null, 10u)
    eq(everywhere.items.map { it.id }.toSet(), setOf(sale1.id, sale2.id, refund.id), "a customer's bills from every store")
    check(everywhere.items.all { it.storeId == "S01" && it.lines.isNotEmpty() }) { "whole bills of their store" }
    check(north.verify().ok && south.verify().ok)
}

fun searchWithTypos() {
    val till = Env.till("S01", "R2", enrolled = false)
    val priyanka = till.createCustomer(NewCustomer(name = "Priyanka Sharma", phone = "99001 12345"))
    till.createCustomer(NewCustomer(name = "Prakash Shah"))
    val hits = till.searchCustomers("priyanka sharam", 10u)
    eq(hits.first().customer.id, priyanka.id, "best hit")
    check(hits.first().matched.contains(Match(MatchField.NAME, MatchKind.FUZZY))) { "matched ${hits.first().matched}" }
    check(hits.first().score > 0u)
    val byDigits = till.searchCustomers("12345", 10u).single()
    eq(byDigits.matched.first().field, MatchField.PHONE, "phone fragment")
    eq(till.searchCustomers("\u0000'\"*) OR (", 10u), emptyList<CustomerHit>(), "any text is a query")
}

fun conflictingEdit() {
    val till = Env.till("S01", "R3", enrolled = false)
    val c = till.createCustomer(NewCustomer(name = "Meera Iyer"))
    val v2 = till.updateCustomer(c.id, c.version, CustomerUpdate(notes = "prefers green tea"))
    eq(v2.version, 2L, "version moved")
    val e = throws<TillException.Conflict> {
        till.updateCustomer(c.id, c.version, CustomerUpdate(name = "Meera I."))
    }
    eq(e.entity, "customer", "entity")
    eq(e.id, c.id, "id")
    eq(e.expectedVersion, 1L, "expected")
    eq(e.currentVersion, 2L, "current")
    eq(till.customer(c.id).name, "Meera Iyer", "nothing written")
    eq(till.updateCustomer(c.id, e.currentVersion, CustomerUpdate(clearPhone = true, name = "Meera I.")).name, "Meera I.", "retry with current")
}

fun typedErrors() {
    val till = Env.till("S01", "R4", enrolled = false)
    val bad = throws<TillException.Validation> { till.createCustomer(NewCustomer(name = "Bad Phone", phone = "12")) }
    eq(bad.field, "phone", "field")
    check(!bad.message.orEmpty().contains("12")) { "no input echoed: ${bad.message}" }
    eq(throws<TillException.Validation> { till.customer("not-a-uuid") }.field, "id", "id field")
    eq(throws<TillException.Validation> { till.updateCustomer(till.createCustomer(NewCustomer(name = "X Y")).id, 1, CustomerUpdate(phone = "98450 33333", clearPhone = true)) }.field, "phone", "set and clear")
    eq(throws<TillException.NotFound> { till.customer("01890a5d-ac96-774b-bcce-b302099a8057") }.entity, "customer", "not found")
    val first = till.createCustomer(NewCustomer(name = "Anil Das", phone = "98450 44444"))
    eq(throws<TillException.Duplicate> { till.createCustomer(NewCustomer(name = "Anil D", phone = "9845044444")) }.existingId, first.id, "duplicate")
    val voided = till.voidBill(till.openBill(NewBill(lines = listOf(item("A", "A", 1, 100)))).id)
    val state = throws<TillException.InvalidState> { till.pay(voided.id, listOf(cash(100))) }
    eq(state.state, "voided", "state")
    eq(throws<TillException.Validation> { till.sync(silentProgress()) }.field, "server_url", "no server configured")
    // Every variant is a TillException, so one catch handles them all.
    check(runCatching { till.bill("01890a5d-ac96-774b-bcce-b302099a8057") }.exceptionOrNull() is TillException)
    val wrong = throws<TillException.WrongStore> {
        TillStore.open(TillConfig(java.io.File(Env.dir, "S01-R4.db").path, SyncServer.TENANT, "S09", "R4", "IN", "INR", "Other"))
    }
    check(wrong.expected.contains("S09"))
}

fun syncErrors() {
    val revoked = Env.till("S01", "R5")
    revoked.sync(silentProgress())
    Env.server.admin("device", "revoke", "--tenant", SyncServer.TENANT, "--store", "S01", "R5")
    eq(throws<TillException.Auth> { revoked.sync(silentProgress()) }.code, "device_revoked", "revoked")

    val port = java.net.ServerSocket(0).use { it.localPort }
    val unreachable = TillStore.open(
        TillConfig(java.io.File(Env.dir, "unreachable.db").path, SyncServer.TENANT, "S01", "R6", "IN", "INR", "Acme",
            serverUrl = "http://127.0.0.1:$port", deviceToken = "token", syncMaxAttempts = 1u),
    )
    throws<TillException.Network> { unreachable.sync(silentProgress()) }
    check(unreachable.syncStatus().lastError != null) { "the failed sync is recorded" }
}

/** A Kotlin implementation of the Rust trait, called from Rust during a sync. */
class Recorder : SyncProgress {
    val events: MutableList<String> = Collections.synchronizedList(mutableListOf())
    override fun phase(phase: SyncPhase) { events.add("phase:$phase") }
    override fun pushed(acknowledged: ULong, quarantined: ULong) { events.add("pushed:$acknowledged:$quarantined") }
    override fun pulled(changes: ULong, cursor: Long) { events.add("pulled:$changes:$cursor") }
    override fun retrying(attempt: UInt, delayMs: ULong, cause: String) { events.add("retrying:$attempt") }
}

fun asyncSyncWithObserver() {
    val till = Env.till("S01", "R7")
    till.createCustomer(NewCustomer(name = "Kavya Nair", phone = "98450 55555"))
    val recorder = Recorder()
    val summary = runBlocking { till.syncAsync(recorder) }
    check(summary.pushed >= 1uL) { "pushed $summary" }
    val phases = recorder.events.filter { it.startsWith("phase:") }
    // A new till pushes, then starts from a snapshot (its customer in it), then pulls.
    eq(phases, listOf("phase:PUSH", "phase:BOOTSTRAP", "phase:PULL", "phase:FINISH"), "phases in order")
    check(summary.bootstrapped >= 1uL) { "bootstrapped $summary" }
    check(recorder.events.any { it.startsWith("pushed:") && !it.startsWith("pushed:0:") }) { "pushed reported: ${recorder.events}" }
    check(recorder.events.any { it == "pulled:${summary.pulled}:${summary.cursor}" } || summary.pages > 1uL) { "pulled reported: ${recorder.events}" }
}

fun threads() {
    val till = Env.till("S01", "T09")
    val pool = Executors.newFixedThreadPool(5)
    val numbers = Collections.synchronizedList(mutableListOf<String>())
    val sync = pool.submit<SyncSummary> { till.sync(silentProgress()) }
    val sellers = (1..4).map { t ->
        pool.submit {
            repeat(25) { i ->
                // Every thread asks for the same five phones.
                val c = till.findOrCreateByPhone("98450 6000${i % 5}", "Thread Customer $t").customer
                numbers += till.sell(NewBill(customerId = c.id, lines = listOf(item("TEA", "Tea", 1, 1_000))), listOf(cash(1_000))).number
            }
        }
    }
    sellers.forEach { it.get(120, TimeUnit.SECONDS) }
    sync.get(120, TimeUnit.SECONDS)
    pool.shutdown()
    eq(numbers.size, 100, "every sale")
    eq(numbers.sorted(), (1..100).map { "S01-T09-%06d".format(it) }, "gapless numbers across threads")
    val local = till.listCustomers(CustomerQuery(limit = 200u)).items.filter { it.name.startsWith("Thread Customer") }
    eq(local.size, 5, "find-or-create is atomic across threads")
    till.sync(silentProgress())
    eq(till.syncStatus().pendingChanges, 0L, "all pushed")
    check(till.verify().ok)
}

fun mergeOfSamePhoneCreatedOffline() {
    val a = Env.till("S01", "M1")
    val b = Env.till("S01", "M2")
    val onA = a.findOrCreateByPhone("98450 77777", "Deepa Menon").customer
    val onB = b.createCustomer(NewCustomer(name = "Deepa M", phone = "+91 98450 77777"))
    check(onA.id != onB.id)
    repeat(2) {
        a.sync(silentProgress())
        b.sync(silentProgress())
    }
    for ((name, till) in listOf("A" to a, "B" to b)) {
        val live = till.searchCustomers("9845077777", 10u)
        eq(live.size, 1, "till $name sees one live customer with the phone")
        eq(till.customer(onA.id).id, till.customer(onB.id).id, "till $name maps both ids to the survivor")
    }
    eq(a.searchCustomers("9845077777", 10u).single().customer.id, b.searchCustomers("9845077777", 10u).single().customer.id, "both tills agree on the survivor")
}
