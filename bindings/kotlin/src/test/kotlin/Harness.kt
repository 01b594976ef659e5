// What the Kotlin tests share: a real till-server process on 127.0.0.1,
// tills opened in a temporary folder, sale inputs, and a tiny runner that
// prints one line per test and a closing "N passed, N failed" line.

import java.io.File
import java.net.HttpURLConnection
import java.net.ServerSocket
import java.net.URI
import java.nio.file.Files
import kotlin.system.exitProcess
import till.*

/** A till-server process over its own data folder, started on a free port of 127.0.0.1. */
class SyncServer(private val binary: String, private val data: File) : AutoCloseable {
    val url: String
    private val process: Process

    init {
        admin("tenant", "create", TENANT)
        for (store in listOf("S01", "S02")) admin("store", "create", "--tenant", TENANT, store)
        val port = ServerSocket(0).use { it.localPort }
        url = "http://127.0.0.1:$port"
        process = ProcessBuilder(binary, "--data-dir", data.path, "serve", "--addr", "127.0.0.1:$port")
            .redirectErrorStream(true)
            .redirectOutput(File(data, "server.log"))
            .start()
        waitUntilReady()
    }

    /** Runs an admin command of the same binary; returns what it printed. */
    fun admin(vararg args: String): String {
        val p = ProcessBuilder(listOf(binary, "--data-dir", data.path) + args)
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start()
        val out = p.inputStream.bufferedReader().readText()
        check(p.waitFor() == 0) { "till-server ${args.joinToString(" ")} failed" }
        return out
    }

    /** Enrolls a device and returns the token the CLI printed. */
    fun enroll(store: String, device: String): String =
        admin("device", "enroll", "--tenant", TENANT, "--store", store, device).trim().also {
            check(it.isNotEmpty() && !it.contains(' ')) { "enroll printed no token" }
        }

    private fun waitUntilReady() {
        val deadline = System.nanoTime() + 30_000_000_000L
        while (System.nanoTime() < deadline) {
            check(process.isAlive) { "till-server exited: " + File(data, "server.log").readText() }
            try {
                val c = URI("$url/healthz").toURL().openConnection() as HttpURLConnection
                c.connectTimeout = 500
                if (c.responseCode == 200) return
            } catch (_: java.io.IOException) {
            }
            Thread.sleep(50)
        }
        error("till-server did not become ready")
    }

    override fun close() {
        process.destroy()
        process.waitFor()
    }

    companion object {
        const val TENANT = "acme"
    }
}

/** Everything one test run shares: a temp folder, the library path, a server. */
object Env {
    val dir: File = Files.createTempDirectory("till-kotlin-").toFile()
    val server: SyncServer by lazy {
        SyncServer(
            System.getenv("TILL_SERVER") ?: error("TILL_SERVER must name the till-server binary"),
            File(dir, "server").apply { mkdirs() },
        )
    }

    /** Opens till `store`/`device`; enrolled on the server when [enrolled]. */
    fun till(store: String, device: String, enrolled: Boolean = true, name: String = "$store-$device"): TillStore {
        val till = TillStore.open(
            TillConfig(
                databasePath = File(dir, "$name.db").path,
                tenant = SyncServer.TENANT,
                storeId = store,
                deviceId = device,
                defaultRegion = "IN",
                currency = "INR",
                storeName = "Acme $store",
                serverUrl = if (enrolled) server.url else null,
                deviceToken = if (enrolled) server.enroll(store, device) else null,
                syncRequestTimeoutMs = 10_000uL,
                syncMaxAttempts = 2u,
            ),
        )
        till.setStaff("priya")
        return till
    }
}

fun item(code: String, name: String, qty: Long, price: Long, taxBp: UInt = 0u) =
    NewLine(productCode = code, name = name, qtyMilli = qty * 1000, unitPrice = price,
        taxCategory = if (taxBp > 0u) "GST" else "", taxRateBp = taxBp)

fun cash(amount: Long) = Tender(method = TenderMethod.CASH, amount = amount)

/** Fails with [message] unless [actual] equals [expected]. */
fun <T> eq(actual: T, expected: T, message: String = "") =
    check(actual == expected) { "$message: expected <$expected>, got <$actual>" }

/** Runs [block], which must throw [E]; returns the exception. */
inline fun <reified E : Throwable> throws(block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw AssertionError("expected ${E::class.simpleName}, got $e", e)
    }
    throw AssertionError("expected ${E::class.simpleName}, nothing was thrown")
}

/** Runs each named test, prints its outcome and a closing tally; exits 1 on any failure. */
fun runTests(tests: List<Pair<String, () -> Unit>>) {
    var passed = 0
    var failed = 0
    for ((name, test) in tests) {
        try {
            test()
            passed++
            println("ok      $name")
        } catch (e: Throwable) {
            failed++
            println("FAILED  $name: $e")
            e.printStackTrace(System.out)
        }
    }
    runCatching { Env.server.close() }
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
