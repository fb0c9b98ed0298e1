import { ApiError, type FieldErrors } from "../api/client";

/**
 * Put the API's `message` where it belongs: next to the field it names, or
 * above the form when it names none (e.g. "Invalid email or password").
 */
export function placeError(err: unknown): { email?: string; password?: string; form?: string } {
  if (!(err instanceof ApiError)) return { form: (err as Error)?.message || "Something went wrong." };
  const fields: FieldErrors = err.fields;
  if (fields.email || fields.password) return { email: fields.email, password: fields.password };
  const msg = err.message;
  const lower = msg.toLowerCase();
  const mentionsEmail = /e-?mail/.test(lower);
  const mentionsPassword = lower.includes("password");
  // "Invalid email or password" is about the pair, not one field.
  if (mentionsEmail && mentionsPassword) return { form: msg };
  if (mentionsEmail) return { email: msg };
  if (mentionsPassword) return { password: msg };
  return { form: msg };
}
