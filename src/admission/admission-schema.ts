/**
 * @module The configuration of SA2C admission control (issue 8, SARA III.B): the fragment that
 * becomes `services[].admission` in config/schema.ts.
 */
import { z } from 'zod';

const fraction = z.number().min(0).max(1);

const ORDER = ['t1', 't2', 't3', 'c'] as const;

/**
 * `services[].admission`. Off by default: with it on, a service refuses new sessions and degrades
 * established ones as the load rises (sa2c.ts has the equations), which an operator has to want.
 *
 * The thresholds are fractions of capacity compared with max(l, l_c), the worse of the
 * dispatcher's own load and the short-term estimate of the cluster load (SARA Fig. 4):
 * - up to t1 everything is admitted;
 * - from t1 to t2 new sessions are refused with a probability rising linearly from 0 to 1;
 * - from t2 to t3 only established sessions are admitted;
 * - from t3 to c the requests or datagrams of established sessions are dropped with a probability
 *   rising linearly from 0 to 1;
 * - from c on everything is refused.
 * While the load stays above t1, t2 and t3 move down (eq. 4) every control period, the period
 * shrinking with the refusal probability (eq. 3); both return to these values once the load is
 * back at or under t1.
 */
export const admissionSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** T1: below it (included) everything is admitted; the thresholds reset here. */
    t1: fraction.default(0.6),
    /** T2 as configured (it moves down under load): new sessions are all refused above it. */
    t2: fraction.default(0.75),
    /** T3 as configured (it moves down under load): established traffic is degraded above it. */
    t3: fraction.default(0.85),
    /** C, the edge capacity: at or above it everything is refused. */
    c: fraction.default(0.95),
    /** T_0 of eq. 3: the control period (between two moves of T2 and T3) when nothing is refused. */
    intervalMs: z.number().int().min(10).max(600_000).default(1000),
    /**
     * Time constant (ms) of the exponential smoothing the feed applies to l and l_c before SA2C sees
     * them (admission-feed.ts): SARA decides on "an estimation of the cluster short term load rather
     * than instantaneous load feedbacks". 0 feeds the samples as they come.
     */
    smoothingMs: z.number().int().min(0).max(600_000).default(500),
    /**
     * Time constant (ms) of the same smoothing while a load rises (issue 17: follow a rise quickly,
     * a fall slowly). Defaults to 100; set it to smoothingMs for SARA's symmetric estimate.
     */
    riseMs: z.number().int().min(0).max(600_000).default(100),
    /**
     * For services whose exchanges the dispatcher times (HTTP; SIP: initial INVITEs to their first answer
     * above 100), the standing queueing delay (ms) the queue controller holds the backends' queue at,
     * refusing new sessions just enough (admission-delay.ts QueueController); it also reads as T1.
     */
    delayTargetMs: z.number().int().min(1).max(600_000).default(100),
    /**
     * How long (ms) the standing delay must stay above delayTargetMs before a new session is refused
     * for it (a queue at exactly capacity wanders past the target and back).
     */
    delayHoldMs: z.number().int().min(0).max(600_000).default(200),
    /**
     * The standing queueing delay (ms) that reads as C. With it the cluster load decided on is
     * min(utilisation, the delay's reading) (admission-delay.ts); 0: utilisation alone (SARA).
     */
    delayCapacityMs: z.number().int().min(0).max(600_000).default(1000),
    /** Window (ms) of the no-queue baseline latency (the lowest interval minimum seen in it). */
    delayBaselineMs: z.number().int().min(100).max(3_600_000).default(10_000),
    /** Floor of the control period, which eq. 3 shrinks by (1 - p) every period (to 0 at p = 1). */
    minIntervalMs: z.number().int().min(1).max(600_000).default(50),
    /** k2 in T2 <- T2 - k2 * excess (eq. 4 has 1); 0 keeps T2 where it is configured. */
    t2Gain: fraction.default(1),
    /** k3 in T3 <- T3 * (1 - k3 * excess) (eq. 4 has 1); 0 keeps T3 where it is configured. */
    t3Gain: fraction.default(1),
    /** Smallest distance the moves keep between t1 and t2 and between t2 and t3. */
    minGap: z.number().gt(0).max(0.5).default(0.01),
    /** Retry-After (seconds) sent with a refused new session (HTTP 503, SIP 503, RTSP 503). */
    retryAfterS: z.number().int().min(0).max(86_400).default(5),
  })
  .strict()
  .superRefine((a, ctx) => {
    for (let i = 1; i < ORDER.length; i++) {
      const lower = ORDER[i - 1]!;
      const key = ORDER[i]!;
      if (!(a[key] > a[lower])) {
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: [key],
          message: `expected more than ${lower} = ${a[lower]} (t1 < t2 < t3 < c; ${key} is ${a[key]})`,
        });
      }
    }
    if (a.delayCapacityMs > 0 && !(a.delayCapacityMs > a.delayTargetMs)) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['delayCapacityMs'],
        message: `expected more than delayTargetMs (${a.delayTargetMs}) or 0 (off)`,
      });
    }
    if (a.minIntervalMs > a.intervalMs) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['minIntervalMs'],
        message: `expected at most intervalMs (${a.intervalMs})`,
      });
    }
  });

export type AdmissionConfig = z.infer<typeof admissionSchema>;
