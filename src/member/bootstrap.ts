import { request } from 'undici';
import type { ServeConfig } from '../config/schema.js';
import type { ConfigState } from '../raft/types.js';
import type { LevelStorage, PersistedState } from '../storage/level-storage.js';
import type { PinoLogger } from '../util/log.js';
import { ClusterFile } from './cluster-file.js';
import type { MemberAddress } from './cluster-file.js';

/** How long `--join` keeps asking the cluster (it may be electing a leader). */
const JOIN_DEADLINE_MS = 60_000;
const JOIN_RETRY_MS = 500;
const MAX_REDIRECTS = 5;

export interface OpenedState {
  readonly state: PersistedState;
  readonly peers: MemberAddress[];
}

/**
 * The member's durable state: resumed from the data dir if it holds any; otherwise created from
 * `--initial-cluster` (a founding member) or by asking a running cluster to add us (`--join`).
 */
export async function openState(config: ServeConfig, storage: LevelStorage, log: PinoLogger): Promise<OpenedState> {
  const clusterFile = new ClusterFile(config.dataDir);
  const existing = await storage.load();
  const known = await clusterFile.read();
  if (existing !== null) {
    if (known !== null) return { state: existing, peers: known };
    if (!config.initialCluster) throw new Error(`${config.dataDir} holds state but no member list (cluster.json); pass --initial-cluster`);
    await clusterFile.write(config.initialCluster);
    return { state: existing, peers: config.initialCluster };
  }
  let peers: MemberAddress[];
  let raftConfig: ConfigState;
  if (config.join) {
    const members = await requestJoin(config, log);
    peers = members.map((m) => ({ name: m.name, peerUrl: m.peerUrl }));
    raftConfig = {
      voters: members.filter((m) => m.voter).map((m) => m.name),
      learners: members.filter((m) => !m.voter).map((m) => m.name),
      peerUrls: Object.fromEntries(peers.map((p) => [p.name, p.peerUrl])),
    };
  } else if (config.initialCluster) {
    if (!config.initialCluster.some((m) => m.name === config.name)) {
      throw new Error(`--initial-cluster does not list this member (${config.name})`);
    }
    peers = config.initialCluster;
    raftConfig = { voters: peers.map((m) => m.name), learners: [], peerUrls: Object.fromEntries(peers.map((p) => [p.name, p.peerUrl])) };
  } else {
    throw new Error('a new member needs --initial-cluster (to found a cluster) or --join CLIENT_URL (to join one)');
  }
  await clusterFile.write(peers); // before the Raft state, so a crash between leaves a fresh dir
  const state = await storage.bootstrap(raftConfig);
  log.info({ voters: raftConfig.voters, learners: raftConfig.learners }, config.join ? 'joined a cluster' : 'bootstrapped a new member');
  return { state, peers };
}

interface MemberView {
  readonly name: string;
  readonly peerUrl: string;
  readonly voter: boolean;
}

/** POST /v1/cluster/members at the given client URL (following 307s), retrying while no leader. */
async function requestJoin(config: ServeConfig, log: PinoLogger): Promise<MemberView[]> {
  const deadline = Date.now() + JOIN_DEADLINE_MS;
  let lastError = 'no answer';
  for (let attempt = 0; Date.now() < deadline && attempt < 1000; attempt++) {
    let url = `${config.join}/v1/cluster/members`;
    for (let hop = 0; hop < MAX_REDIRECTS; hop++) {
      try {
        const res = await request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name: config.name, peerUrl: config.listenPeerUrl }),
          headersTimeout: 10_000,
          bodyTimeout: 10_000,
        });
        const text = await res.body.text();
        if (res.statusCode === 307 && typeof res.headers['location'] === 'string') {
          url = res.headers['location'];
          continue;
        }
        if (res.statusCode === 200) return (JSON.parse(text) as { members: MemberView[] }).members;
        lastError = `${res.statusCode} ${text}`;
        if (res.statusCode < 500) throw new Error(`the cluster refused to add ${config.name}: ${text}`);
      } catch (err) {
        if (err instanceof Error && err.message.startsWith('the cluster refused')) throw err;
        lastError = err instanceof Error ? err.message : String(err);
      }
      break;
    }
    log.warn({ join: config.join, error: lastError }, 'join not accepted yet; retrying');
    await new Promise((r) => setTimeout(r, JOIN_RETRY_MS));
  }
  throw new Error(`could not join via ${config.join}: ${lastError}`);
}
