// A first day at a store, from Kotlin: the same native library an Android
// app links, through the generated bindings in bindings/kotlin.
// Run it with examples/kotlin/run.

import java.nio.file.Files
import till.*

fun main() {
    val dir = Files.createTempDirectory("till-first-day-").toFile()
    val store = TillStore.open(
        TillConfig(
            databasePath = "$dir/till.db",
            tenant = "acme-retail",
            storeId = "S01",
            deviceId = "T01",
            defaultRegion = "IN",
            currency = "INR",
            storeName = "Acme Tea House",
        ),
    )
    store.setStaff("priya")

    // A customer walks in; the cashier types their phone.
    val (asha, created) = store.findOrCreateByPhone("98765 43210", "Asha Rao")
    println("customer ${asha.number} ${if (created) "created" else "found"}")

    // Two packs of tea with 5% tax, and a mug, paid in cash.
    val bill = store.sell(
        NewBill(
            customerId = asha.id,
            lines = listOf(
                NewLine(productCode = "TEA-250", name = "Assam Tea 250g", qtyMilli = 2_000, unitPrice = 18_000,
                    taxCategory = "GST5", taxRateBp = 500u),
                NewLine(productCode = "MUG", name = "Tea Mug", qtyMilli = 1_000, unitPrice = 25_000),
            ),
        ),
        listOf(Tender(method = TenderMethod.CASH, amount = 70_000)),
    )
    println("bill ${bill.number}: total ${bill.total}, change ${bill.changeDue} (paise)\n")
    println(store.receipt(bill.id, ReceiptWidth.COLS32))

    // Later the cashier finds her again with a typo in her name.
    val hit = store.searchCustomers("asha rau", 5u).first()
    println("search 'asha rau' -> ${hit.customer.name}, matched ${hit.matched}")

    // Someone else edited her meanwhile: a stale version is refused, not overwritten.
    store.updateCustomer(asha.id, asha.version, CustomerUpdate(notes = "likes strong tea"))
    try {
        store.updateCustomer(asha.id, asha.version, CustomerUpdate(notes = "prefers green tea"))
    } catch (e: TillException.Conflict) {
        println("stale edit refused: version ${e.expectedVersion} is now ${e.currentVersion}")
    }

    val summary = store.customerSummary(asha.id)
    println("visits ${summary.visits}, spent ${summary.totalSpent} ${summary.currency}")
    println("changes waiting to sync: ${store.syncStatus().pendingChanges}")
    println("store consistent: ${store.verify().ok}")
}
