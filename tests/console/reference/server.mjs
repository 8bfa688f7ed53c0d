// The published console reference server (console + tenant + audit products) under Hono, for the
// differential tests in tests/console/differential. Configured only by environment variables:
//
//   DATABASE_URL      PostgreSQL that holds the `tenants` and `audit_logs` tables (required)
//   DB_ROLE           role to SET on every new connection of the tenant product (optional)
//   AUDIT_DB_ROLE     the same for the audit product (default: DB_ROLE)
//   TOKEN_HASH        `sha256:<hex>`, the console's connectionTokenHash (required)
//   ALLOWED_ORIGINS   comma list of CORS origins
//   ALLOWED_EMAILS    comma list of magic link address patterns
//   AUTO_APPROVE      1/0
//   MAGIC_LINK        1/0 (magic links are kept in memory, see memoryAdapter)
//   MAX_ATTEMPTS      wrong codes before a magic link locks (default: the package's)
//   AUDIT_TABLES      comma list of audited tables (only needed for ENRICHMENTS)
//   ENRICHMENTS       JSON list of {table, operation, label?, severity?, compliance?, ...}
//   PORT              0 picks a free port; `listening <port>` is printed once ready
//
// Test-only control routes live under /__test/, outside the console's /.well-known/better/.

import { serve } from "@hono/node-server";
import { betterAudit } from "@usebetterdev/audit-core";
import { drizzleAuditAdapter } from "@usebetterdev/audit-drizzle";
import { betterConsole, parseConnectionTokenHash, signSessionJwt } from "@usebetterdev/console";
import { createConsoleMiddleware } from "@usebetterdev/console/hono";
import { betterTenant } from "@usebetterdev/tenant-core";
import { drizzleDatabase } from "@usebetterdev/tenant-drizzle";
import { drizzle } from "drizzle-orm/node-postgres";
import { pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { Hono } from "hono";
import pg from "pg";

const env = process.env;
const flag = (name) => env[name] === "1" || env[name] === "true";
const list = (name) => (env[name] ?? "").split(",").map((item) => item.trim()).filter(Boolean);

for (const name of ["DATABASE_URL", "TOKEN_HASH"]) {
  if (!env[name]) {
    console.error(`${name} is required`);
    process.exit(2);
  }
}

// --- database ------------------------------------------------------------------------------------

// The tables are under forced row-level security, and audit_logs only lets one role delete:
// each product connects in the role our own server uses for the same work.
const pools = [];
function database(role) {
  const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 4 });
  if (role) {
    const quoted = `"${role.replaceAll('"', '""')}"`;
    // pg queues this before any other query of the new connection.
    pool.on("connect", (client) => {
      client.query(`SET ROLE ${quoted}`).catch((error) => console.error("SET ROLE:", error));
    });
  }
  pools.push(pool);
  return drizzle(pool);
}

// Same columns as the package's tenants table, but the id is generated here: our table's id has
// no database default (Django fills it in), and the package leaves it to the database.
const tenantsTable = pgTable("tenants", {
  id: uuid("id").primaryKey().$defaultFn(() => crypto.randomUUID()),
  name: text("name").notNull(),
  slug: text("slug").notNull().unique(),
  createdAt: timestamp("created_at", { withTimezone: true }).defaultNow().notNull(),
});

// --- magic links in memory -----------------------------------------------------------------------

// The sessions and magicLinks repositories the console core expects (the method list and the
// semantics of the package's drizzle adapter), kept in Maps so no console tables are needed.
function memoryAdapter() {
  const sessions = new Map(); // id -> session
  const links = new Map(); // id -> magic link
  const copy = (record) => (record ? { ...record } : null);
  const now = () => Date.now();
  // session_id is a uuid column in the package's schema: found whatever the letters' case.
  const bySessionId = (sessionId) =>
    [...links.values()].find((l) => l.sessionId === String(sessionId).toLowerCase());
  return {
    bySessionId,
    sessions: {
      async createSession(data) {
        const session = {
          id: crypto.randomUUID(),
          email: data.email,
          tokenHash: data.tokenHash,
          permissions: data.permissions,
          expiresAt: new Date(data.expiresAt),
          createdAt: new Date(),
        };
        sessions.set(session.id, session);
        return copy(session);
      },
      async getSessionByTokenHash(tokenHash) {
        return copy([...sessions.values()].find((s) => s.tokenHash === tokenHash));
      },
      async deleteSession(id) {
        sessions.delete(id);
      },
      async deleteAllSessions() {
        sessions.clear();
      },
      async deleteExpiredSessions() {
        for (const [id, s] of sessions) if (s.expiresAt.getTime() < now()) sessions.delete(id);
      },
    },
    magicLinks: {
      async createMagicLink(data) {
        const link = {
          id: crypto.randomUUID(),
          email: data.email,
          codeHash: data.codeHash,
          sessionId: data.sessionId,
          tokenHash: null,
          failedAttempts: 0,
          expiresAt: new Date(data.expiresAt),
          usedAt: null,
          createdAt: new Date(),
        };
        links.set(link.id, link);
        return copy(link);
      },
      async getMagicLinkBySessionId(sessionId) {
        return copy(bySessionId(sessionId));
      },
      async markMagicLinkUsed(id) {
        const link = links.get(id);
        if (link) link.usedAt = new Date();
      },
      async setMagicLinkTokenHash(id, tokenHash) {
        // Only the first claim wins, like `UPDATE ... WHERE token_hash IS NULL`.
        const link = links.get(id);
        if (!link || link.tokenHash !== null) return false;
        link.tokenHash = tokenHash;
        return true;
      },
      async clearMagicLinkTokenHash(id) {
        const link = links.get(id);
        if (link) link.tokenHash = null;
      },
      async incrementFailedAttempts(id) {
        const link = links.get(id);
        if (!link) return 0;
        link.failedAttempts += 1;
        return link.failedAttempts;
      },
      async deleteExpiredMagicLinks() {
        for (const [id, l] of links) if (l.expiresAt.getTime() < now()) links.delete(id);
      },
    },
  };
}

// --- the reference console -----------------------------------------------------------------------

const codes = new Map(); // sessionId -> {email, code}: what the "email" would have carried
const adapter = flag("MAGIC_LINK") ? memoryAdapter() : undefined;
const magicLink = flag("MAGIC_LINK")
  ? {
      allowedEmails: env.ALLOWED_EMAILS ?? "",
      ...(env.MAX_ATTEMPTS ? { maxAttempts: Number(env.MAX_ATTEMPTS) } : {}),
      async sendMagicLinkEmail({ email, sessionId, code }) {
        codes.set(sessionId, { email, code });
      },
    }
  : undefined;

const consoleInstance = betterConsole({
  connectionTokenHash: env.TOKEN_HASH,
  allowedOrigins: list("ALLOWED_ORIGINS"),
  sessions: { autoApprove: flag("AUTO_APPROVE"), ...(magicLink ? { magicLink } : {}) },
  ...(adapter ? { adapter } : {}),
  // A 500 of the reference is part of what the tests compare; its cause goes to stderr.
  onError: (error) => console.error("console error:", error),
});

betterTenant({
  database: drizzleDatabase(database(env.DB_ROLE), { table: tenantsTable }),
  tenantResolver: { header: "x-tenant-id" },
  console: consoleInstance,
  telemetry: { enabled: false },
});

const audit = betterAudit({
  database: drizzleAuditAdapter(database(env.AUDIT_DB_ROLE || env.DB_ROLE)),
  auditTables: list("AUDIT_TABLES"),
  console: consoleInstance,
});
for (const { table, operation, ...enrichment } of JSON.parse(env.ENRICHMENTS || "[]")) {
  audit.enrich(table, operation, enrichment);
}

// --- HTTP ----------------------------------------------------------------------------------------

const app = new Hono();
app.use("*", createConsoleMiddleware(consoleInstance));

const body = async (c) => {
  try {
    return await c.req.json();
  } catch {
    return {};
  }
};

// The code the console "mailed" for a session id.
app.get("/__test/code", (c) => {
  const sent = codes.get(c.req.query("session_id") ?? "");
  return sent ? c.json(sent) : c.json({ error: "no code was sent for this session_id" }, 404);
});

// Move a magic link's expiry `seconds` (default 3600) into the past.
app.post("/__test/expire", async (c) => {
  const { session_id: sessionId, seconds = 3600 } = await body(c);
  const link = adapter?.bySessionId(sessionId);
  if (!link) return c.json({ error: "no magic link has this session_id" }, 404);
  link.expiresAt = new Date(Date.now() - seconds * 1000);
  return c.json({ ok: true });
});

// A stateless session token signed as auto-approve signs it, with any permission level and
// lifetime (a negative `expiresIn` gives an expired token).
app.post("/__test/token", async (c) => {
  const { permissions = "admin", expiresIn = 3600, email = "dev@localhost" } = await body(c);
  const payload = {
    sessionId: crypto.randomUUID(),
    email,
    permissions,
    expiresAt: Math.floor(Date.now() / 1000) + expiresIn,
  };
  const secret = parseConnectionTokenHash(env.TOKEN_HASH);
  return c.json({ sessionToken: await signSessionJwt(payload, secret) });
});

const server = serve(
  { fetch: app.fetch, hostname: "127.0.0.1", port: Number(env.PORT ?? 0) },
  (info) => console.log(`listening ${info.port}`),
);

const stop = () =>
  server.close(() => Promise.all(pools.map((pool) => pool.end())).finally(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
