// Changing an open trade: its take-profit / stop-loss (PUT /trade/{id}/tpsl)
// and, for an isolated trade, its margin (POST /trade/{id}/margin). The checks
// are the engine's (orders.py `_set_tpsl`, `_add_margin`), so the form says
// what is wrong before the round trip; the engine has the last word.

import type { TpslBody } from "../api/types";
import { isolatedTriggerPrice, type MarginMode, type Side } from "./calc";
import { formatUnits, parseUnits, PRICE_DECIMALS, USD_DECIMALS } from "./fixed";
import { formatPrice, formatUsd } from "./format";

export interface EditableTrade {
  side: Side;
  qty: number; // 1e-8 units
  entry: number;
  margin: number;
  marginMode: MarginMode;
  takeProfit: number | null;
  stopLoss: number | null;
}

export interface PriceRules {
  tickSize: number;
  priceDecimals: number;
  mmrPpm: number;
}

export interface TpslCheck {
  errors: Partial<Record<"tp" | "sl" | "form", string>>;
  /** only the keys that change (null removes a level); null when invalid or nothing changes */
  body: TpslBody | null;
}

/** A price field: empty text = no level (null); otherwise a positive multiple of the tick. */
function readLevel(text: string, rules: PriceRules): { value: number | null; error?: string } {
  if (!text.trim()) return { value: null };
  const u = parseUnits(text, PRICE_DECIMALS);
  if (u === null || u <= 0n) return { value: null, error: "Enter a positive price, or leave it empty for none." };
  if (u % BigInt(rules.tickSize) !== 0n) {
    return { value: null, error: `Use steps of ${formatPrice(rules.tickSize, { priceDecimals: rules.priceDecimals })}.` };
  }
  return { value: Number(u) };
}

/** The text a level field starts with: the current level, or empty. */
export function levelText(value: number | null, priceDecimals: number): string {
  if (value === null) return "";
  return formatUnits(value, PRICE_DECIMALS, priceDecimals, { group: false });
}

/**
 * Check a TP/SL edit of `trade` at the current `mark` (null: unknown). Empty
 * text removes a level. The engine's rules: TP above the entry for a long
 * (below for a short), SL below it (above); neither already reached by the
 * mark; an isolated trade's SL before its liquidation price.
 */
export function checkTpsl(trade: EditableTrade, tpText: string, slText: string, rules: PriceRules,
                          mark: number | null): TpslCheck {
  const errors: TpslCheck["errors"] = {};
  const tp = readLevel(tpText, rules);
  const sl = readLevel(slText, rules);
  if (tp.error) errors.tp = tp.error;
  if (sl.error) errors.sl = sl.error;
  const s = trade.side;
  const long = s > 0;
  if (!errors.tp && tp.value !== null) {
    if ((tp.value - trade.entry) * s <= 0) errors.tp = `A ${long ? "long" : "short"}'s take-profit must be ${long ? "above" : "below"} the entry price.`;
    else if (mark !== null && (tp.value - mark) * s <= 0) errors.tp = "The mark price is already past this take-profit; close the trade instead.";
  }
  if (!errors.sl && sl.value !== null) {
    if ((trade.entry - sl.value) * s <= 0) errors.sl = `A ${long ? "long" : "short"}'s stop-loss must be ${long ? "below" : "above"} the entry price.`;
    else if (mark !== null && (mark - sl.value) * s <= 0) errors.sl = "The mark price is already past this stop-loss; close the trade instead.";
    else if (trade.marginMode === "isolated") {
      const liq = isolatedTriggerPrice(s, trade.qty, trade.entry, trade.margin, rules.mmrPpm);
      if ((sl.value - liq) * s <= 0) {
        errors.sl = `The stop-loss must come before the liquidation price ${formatPrice(liq, { priceDecimals: rules.priceDecimals })}.`;
      }
    }
  }
  if (Object.keys(errors).length > 0) return { errors, body: null };
  const body: TpslBody = {};
  if (tp.value !== trade.takeProfit) body.take_profit = tp.value;
  if (sl.value !== trade.stopLoss) body.stop_loss = sl.value;
  if (Object.keys(body).length === 0) return { errors: { form: "Nothing to change." }, body: null };
  return { errors, body };
}

export interface AddMarginCheck {
  amount: number | null; // USD, 4-decimal units
  error: string | null;
  /** the liquidation price with the added margin */
  liquidationPrice: number | null;
}

/** Add `text` dollars to an isolated trade's margin, from a free balance of `balance`. */
export function checkAddMargin(text: string, balance: number, trade: EditableTrade, mmrPpm: number): AddMarginCheck {
  if (trade.marginMode !== "isolated") {
    return { amount: null, error: "Only isolated trades take extra margin; cross trades share the balance.", liquidationPrice: null };
  }
  if (!text.trim()) return { amount: null, error: null, liquidationPrice: null };
  const u = parseUnits(text, USD_DECIMALS);
  if (u === null || u <= 0n) return { amount: null, error: "Enter a positive amount.", liquidationPrice: null };
  const amount = Number(u);
  if (amount > balance) {
    return { amount, error: `More than the free balance (${formatUsd(balance)}).`, liquidationPrice: null };
  }
  return {
    amount,
    error: null,
    liquidationPrice: isolatedTriggerPrice(trade.side, trade.qty, trade.entry, trade.margin + amount, mmrPpm),
  };
}
