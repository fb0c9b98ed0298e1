import { describe, expect, it } from "vitest";
import { ApiError, readErrorBody } from "../api/client";
import { placeError } from "./authErrors";

const err = (status: number, body: unknown) => {
  const { message, fields } = readErrorBody(status, body);
  return new ApiError(status, message, body, fields);
};

describe("auth errors", () => {
  it("puts a message about one field next to that field", () => {
    expect(placeError(err(409, { message: "Email already registered" }))).toEqual({ email: "Email already registered" });
    expect(placeError(err(422, { message: "Password must be at least 8 characters" }))).toEqual({
      password: "Password must be at least 8 characters",
    });
  });
  it("keeps a message about the pair above the form", () => {
    expect(placeError(err(401, { message: "Invalid email or password" }))).toEqual({ form: "Invalid email or password" });
    expect(placeError(err(429, { message: "Too many attempts" }))).toEqual({ form: "Too many attempts" });
  });
  it("reads per-field lists (errors or FastAPI detail)", () => {
    const e = err(422, { message: "Invalid body", detail: [{ loc: ["body", "email"], msg: "value is not a valid email address" }] });
    expect(placeError(e)).toEqual({ email: "value is not a valid email address", password: undefined });
  });
  it("has a default message per status", () => {
    expect(readErrorBody(503, null).message).toMatch(/unavailable/);
    expect(readErrorBody(500, "oops").message).toBe("Request failed (HTTP 500).");
  });
});
