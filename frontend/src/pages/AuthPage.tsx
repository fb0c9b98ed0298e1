import { useQueryClient } from "@tanstack/react-query";
import { useId, useState, type FormEvent } from "react";
import { api } from "../api/endpoints";
import { keys } from "../api/queries";
import { placeError } from "../lib/authErrors";
import { href, navigate } from "../router";

type Mode = "signin" | "signup";

export function AuthPage({ mode }: { mode: Mode }) {
  const qc = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [errors, setErrors] = useState<{ email?: string; password?: string; form?: string }>({});
  const [busy, setBusy] = useState(false);
  const id = useId();
  const p = mode; // data-testid prefix: signup-* / signin-*
  const title = mode === "signup" ? "Create your account" : "Sign in";

  async function submit(e: FormEvent) {
    e.preventDefault();
    const local: typeof errors = {};
    if (!email.trim()) local.email = "Enter your email address.";
    if (!password) local.password = "Enter a password.";
    if (local.email || local.password) {
      setErrors(local);
      return;
    }
    setBusy(true);
    setErrors({});
    try {
      if (mode === "signup") await api.signup(email.trim(), password);
      // Sign-up creates the account; sign-in sets the session cookie.
      const res = await api.signin(email.trim(), password);
      qc.setQueryData(keys.whoami, res.user);
      navigate("/trade");
    } catch (err) {
      setErrors(placeError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="auth" aria-labelledby={`${id}-title`}>
      <form className="card auth__card" onSubmit={submit} noValidate data-testid={`${p}-form`}>
        <h1 id={`${id}-title`} className="auth__title">
          {title}
        </h1>
        <p className="auth__lead">
          {mode === "signup"
            ? "Start with $5,000.00 in paper money. No card, no risk."
            : "Welcome back. Your positions kept trading while you were away."}
        </p>
        {errors.form && (
          <div className="form-error" role="alert" data-testid={`${p}-error`}>
            {errors.form}
          </div>
        )}
        <div className="field">
          <label htmlFor={`${id}-email`}>Email</label>
          <input
            id={`${id}-email`}
            type="email"
            inputMode="email"
            autoComplete="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            aria-invalid={Boolean(errors.email)}
            aria-describedby={errors.email ? `${id}-email-err` : undefined}
            data-testid={`${p}-email`}
            required
          />
          {errors.email && (
            <p className="field__error" id={`${id}-email-err`} data-testid={`${p}-email-error`}>
              {errors.email}
            </p>
          )}
        </div>
        <div className="field">
          <label htmlFor={`${id}-password`}>Password</label>
          <input
            id={`${id}-password`}
            type="password"
            autoComplete={mode === "signup" ? "new-password" : "current-password"}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            aria-invalid={Boolean(errors.password)}
            aria-describedby={errors.password ? `${id}-password-err` : undefined}
            data-testid={`${p}-password`}
            required
          />
          {errors.password && (
            <p className="field__error" id={`${id}-password-err`} data-testid={`${p}-password-error`}>
              {errors.password}
            </p>
          )}
        </div>
        <button type="submit" className="btn btn--primary btn--block" disabled={busy} data-testid={`${p}-submit`}>
          {busy ? "Please wait…" : mode === "signup" ? "Create account" : "Sign in"}
        </button>
        <p className="auth__switch">
          {mode === "signup" ? (
            <>
              Have an account? <a href={href("/signin")}>Sign in</a>
            </>
          ) : (
            <>
              New to Opex? <a href={href("/signup")}>Create an account</a>
            </>
          )}
        </p>
      </form>
    </section>
  );
}
