// Container probes as the kubelet's prober runs them (pkg/kubelet/prober): httpGet and tcpSocket
// from the node's network namespace against the pod IP (so a listener bound to the pod's loopback
// only fails its probe, as in a cluster), exec inside the container. An HTTP status from 200 to
// 399 is success. The worker applies periods and thresholds.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { Container, Probe } from './pod-spec.ts';

export interface ProbeTarget {
  readonly podIP: string;
  readonly container: Container;
  /** Runs `command` inside the container; resolves to its exit code. */
  exec(command: readonly string[], timeoutMs: number): Promise<number>;
}

export interface ProbeTiming {
  readonly initialDelayMs: number;
  readonly periodMs: number;
  readonly timeoutMs: number;
  readonly successThreshold: number;
  readonly failureThreshold: number;
}

/** The probe's timing with Kubernetes' defaults; `periodOverrideMs` shortens every period (tests). */
export function probeTiming(probe: Probe, periodOverrideMs: number | undefined): ProbeTiming {
  return {
    initialDelayMs: (probe.initialDelaySeconds ?? 0) * 1000,
    periodMs: periodOverrideMs ?? (probe.periodSeconds ?? 10) * 1000,
    timeoutMs: (probe.timeoutSeconds ?? 1) * 1000,
    successThreshold: probe.successThreshold ?? 1,
    failureThreshold: probe.failureThreshold ?? 3,
  };
}

function resolvePort(port: number | string, container: Container): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = container.ports?.find((p) => p.name === port);
  if (named === undefined) throw new Error(`probe port ${port} is not a named port of container ${container.name}`);
  return named.containerPort;
}

/** Runs `probe` once; true on success. */
export async function runProbe(probe: Probe, target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  try {
    if (probe.httpGet !== undefined) {
      const get = probe.httpGet;
      const port = resolvePort(get.port, target.container);
      const request = get.scheme === 'HTTPS' ? httpsRequest : httpRequest;
      return await new Promise<boolean>((resolve) => {
        const headers: Record<string, string> = { 'user-agent': 'kube-probe/1.35' };
        for (const h of get.httpHeaders ?? []) headers[h.name] = h.value;
        const req = request({ host: get.host ?? target.podIP, port, path: get.path ?? '/', method: 'GET', headers, timeout: timeoutMs, rejectUnauthorized: false }, (res) => {
          res.resume();
          const code = res.statusCode ?? 0;
          resolve(code >= 200 && code < 400);
        });
        req.on('timeout', () => { req.destroy(); resolve(false); });
        req.on('error', () => { resolve(false); });
        req.end();
      });
    }
    if (probe.tcpSocket !== undefined) {
      const port = resolvePort(probe.tcpSocket.port, target.container);
      return await new Promise<boolean>((resolve) => {
        const socket = connect({ host: probe.tcpSocket?.host ?? target.podIP, port, timeout: timeoutMs });
        socket.once('connect', () => { socket.destroy(); resolve(true); });
        socket.once('timeout', () => { socket.destroy(); resolve(false); });
        socket.once('error', () => { resolve(false); });
      });
    }
    if (probe.exec !== undefined) return (await target.exec(probe.exec.command ?? [], timeoutMs)) === 0;
    return true;
  } catch {
    return false;
  }
}
