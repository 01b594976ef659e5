// The generated TypeScript API of Till, run in Node against the real native
// library through ubrn's napi target (the same till.ts React Native runs
// over JSI), and a real till-server process: records and defaults, bigint
// money, enums, typed errors, a JS sync observer called from Rust, and the
// promise-returning sync. `run` beside this file generates ./generated.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BillStatus,
  NewBill,
  NewCustomer,
  NewLine,
  ReceiptWidth,
  Stage,
  SyncPhase,
  type SyncProgress,
  Tender,
  TenderMethod,
  TillConfig,
  TillError,
  TillStore,
  silentProgress,
  CustomerUpdate,
} from "./generated/index";

const dir = mkdtempSync(join(tmpdir(), "till-rn-"));
const serverBin = process.env.TILL_SERVER!;
const data = join(dir, "server");
const admin = (...args: string[]) =>
  execFileSync(serverBin, ["--data-dir", data, ...args], { encoding: "utf8" });

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let server: ChildProcess | undefined;
async function startServer(): Promise<string> {
  admin("tenant", "create", "acme");
  admin("store", "create", "--tenant", "acme", "S01");
  const port = await freePort();
  const log = openSync(join(dir, "server.log"), "w");
  server = spawn(serverBin, ["--data-dir", data, "serve", "--addr", `127.0.0.1:${port}`], {
    stdio: ["ignore", log, log],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return url;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error("till-server did not become ready");
}
after(() => server?.kill());

function open(device: string, url?: string) {
  const till = TillStore.open(
    TillConfig.create({
      databasePath: join(dir, `${device}.db`),
      tenant: "acme",
      storeId: "S01",
      deviceId: device,
      defaultRegion: "IN",
      currency: "INR",
      storeName: "Acme Tea House",
      serverUrl: url,
      deviceToken: url ? admin("device", "enroll", "--tenant", "acme", "--store", "S01", device).trim() : undefined,
      syncMaxAttempts: 2,
    }),
  );
  till.setStaff("priya");
  return till;
}

const tea = (qty: bigint) =>
  NewLine.create({ productCode: "TEA-250", name: "Assam Tea 250g", qtyMilli: qty * 1000n, unitPrice: 18_000n });

test("records, defaults, bigint money and enums cross the boundary", () => {
  const till = open("R1");
  const asha = till.createCustomer(
    NewCustomer.create({ name: " Asha  Rao ", phone: "98765 43210", tags: ["vip"], stage: Stage.Loyal }),
  );
  assert.equal(asha.name, "Asha Rao");
  assert.equal(asha.phone?.e164, "+919876543210");
  assert.equal(asha.stage, Stage.Loyal);
  assert.equal(asha.version, 1n);
  const bill = till.sell(
    NewBill.create({ customerId: asha.id, lines: [tea(2n)] }),
    [Tender.create({ method: TenderMethod.Cash, amount: 40_000n })],
  );
  assert.equal(bill.status, BillStatus.Paid);
  assert.equal(bill.total, 36_000n);
  assert.equal(bill.changeDue, 4_000n);
  assert.equal(bill.lines[0].lineNo, 1);
  assert.match(till.receipt(bill.id, ReceiptWidth.Cols32), /Acme Tea House/);
  const hit = till.searchCustomers("asha rau", 5)[0];
  assert.equal(hit.customer.id, asha.id);
  assert.equal(till.customerSummary(asha.id).visits, 1n);
  assert.ok(till.verify().ok);
});

test("errors are TillError variants carrying their fields", () => {
  const till = open("R2");
  const c = till.createCustomer(NewCustomer.create({ name: "Meera Iyer" }));
  till.updateCustomer(c.id, c.version, CustomerUpdate.create({ notes: "green tea" }));
  assert.throws(
    () => till.updateCustomer(c.id, c.version, CustomerUpdate.create({ name: "Meera I." })),
    (e: unknown) => {
      assert.ok(TillError.Conflict.instanceOf(e), String(e));
      assert.equal(e.inner.expectedVersion, 1n);
      assert.equal(e.inner.currentVersion, 2n);
      return true;
    },
  );
  assert.throws(
    () => till.createCustomer(NewCustomer.create({ name: "Bad Phone", phone: "12" })),
    (e: unknown) => TillError.Validation.instanceOf(e) && e.inner.field === "phone",
  );
  assert.throws(
    () => till.customer("01890a5d-ac96-774b-bcce-b302099a8057"),
    (e: unknown) => TillError.NotFound.instanceOf(e) && e.inner.entity === "customer",
  );
});

test("the promise-returning sync reports progress to a JS observer", async () => {
  const url = await startServer();
  const till = open("T01", url);
  till.findOrCreateByPhone("98450 11111", "Ravi Kumar");
  const phases: SyncPhase[] = [];
  let pushed = 0n;
  const progress: SyncProgress = {
    phase: (p) => void phases.push(p),
    pushed: (acknowledged) => void (pushed += acknowledged),
    pulled: () => {},
    retrying: () => {},
  };
  const summary = await till.syncAsync(progress);
  assert.equal(summary.pushed, 1n);
  assert.equal(pushed, 1n);
  // A new till pushes, then starts from a snapshot (its customer in it), then pulls.
  assert.deepEqual(phases, [SyncPhase.Push, SyncPhase.Bootstrap, SyncPhase.Pull, SyncPhase.Finish]);
  assert.ok(summary.bootstrapped >= 1n);
  assert.equal(till.syncStatus().pendingChanges, 0n);

  const other = open("T02", url);
  other.sync(silentProgress());
  assert.equal(other.searchCustomers("98450 11111", 5)[0]?.customer.name, "Ravi Kumar");

  admin("device", "revoke", "--tenant", "acme", "--store", "S01", "T02");
  await assert.rejects(other.syncAsync(silentProgress()), (e: unknown) => TillError.Auth.instanceOf(e) && e.inner.code === "device_revoked");
});
