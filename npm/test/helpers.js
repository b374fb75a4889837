// Paths and small helpers the Node tests share.
import { readFileSync } from "node:fs";

export const repo = new URL("../../", import.meta.url);
export const twimlDir = new URL("twiml/fixtures/", repo);
export const lintDir = new URL("tests/fixtures/lint/", repo);

export const read = (url) => readFileSync(url);
export const readText = (url) => readFileSync(url, "utf8");
