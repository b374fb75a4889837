// The CLI's SARIF log (tests/fixtures/lint/all.sarif, a golden of `twiml-guard lint --format
// sarif` kept current by cli/tests/lint_cli.rs) against the SARIF 2.1.0 JSON schema that
// @microsoft/jest-sarif ships.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

import Ajv from "ajv";
import { lintDir, readText } from "./helpers.js";

const require = createRequire(import.meta.url);
const schema = require("@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json");

// The schema is written in JSON Schema draft-04, which ajv 6 reads once given its meta-schema.
function validator() {
  const ajv = new Ajv({ allErrors: true, schemaId: "auto" });
  ajv.addMetaSchema(require("ajv/lib/refs/json-schema-draft-04.json"));
  return ajv.compile(schema);
}

test("the SARIF log validates against the SARIF 2.1.0 schema", () => {
  const log = JSON.parse(readText(new URL("all.sarif", lintDir)));
  const validate = validator();
  assert.ok(validate(log), JSON.stringify(validate.errors, null, 1));
  assert.equal(log.version, "2.1.0");
  assert.ok(log.runs[0].results.length >= 8);
});

test("the validator is live: a wrong level is refused", () => {
  const log = JSON.parse(readText(new URL("all.sarif", lintDir)));
  log.runs[0].results[0].level = "fatal";
  assert.equal(validator()(log), false);
});
