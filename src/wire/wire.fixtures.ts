/**
 * @module Test vectors shared by the wire tests: a fixed key and messages whose bytes were written by
 * hand and whose tags were computed outside Node (`openssl dgst -sha256 -mac HMAC -macopt hexkey:…`),
 * plus `handSeal`, an envelope built straight from the contract to forge versions and types that
 * `seal()` refuses to produce.
 */
import { createHmac } from 'node:crypto';

/** 32 bytes 00 01 02 … 1f. */
export const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');

/** host 0x0102, seq 0x01020304, flag 3 (planned failure), timestamp 0xA0B0C0D0. */
export const AVAILABILITY_BODY_HEX = '0102' + '01020304' + '03' + 'a0b0c0d0';
/** body ‖ 0x11 ‖ first 16 bytes of HMAC-SHA256(KEY, body ‖ 0x11) (openssl). */
export const AVAILABILITY_MSG_HEX = AVAILABILITY_BODY_HEX + '11' + '25cbc7be1b5efe961b964c941f5fb2ed';

/**
 * host 7, seq 9, timestamp 100, cpu 0 → 0000, memory 1 → ffff, network 0.5 → 8000 (32767.5 rounds
 * up), io 0.25 → 4000 (16383.75), backlog 0.75 → bfff (49151.25), load 0.2 → 3333 (13107).
 */
export const LOAD_VECTOR_BODY_HEX = '0007' + '00000009' + '00000064' + '0000' + 'ffff' + '8000' + '4000' + 'bfff' + '3333';
/** body ‖ 0x12 ‖ first 16 bytes of HMAC-SHA256(KEY, body ‖ 0x12) (openssl). */
export const LOAD_VECTOR_MSG_HEX = LOAD_VECTOR_BODY_HEX + '12' + '26308b5d7d97853a29df7e66bc02214e';

/**
 * group 0x0102, sender 0x0304, priority 100 (0x64), flags 0x01 (preempt), interval 20 ms (0x0014),
 * epoch 7, seq 0x0A0B0C0D, timestamp 0xA0B0C0D0.
 */
export const ELECTION_ADVERT_BODY_HEX = '0102' + '0304' + '64' + '01' + '0014' + '00000007' + '0a0b0c0d' + 'a0b0c0d0';
/** body ‖ 0x13 ‖ first 16 bytes of HMAC-SHA256(KEY, body ‖ 0x13) (openssl). */
export const ELECTION_ADVERT_MSG_HEX = ELECTION_ADVERT_BODY_HEX + '13' + '8b7b620fb34c8655a45eddc6a84245d3';

/** body ‖ versionByte ‖ HMAC-SHA256(key, body ‖ versionByte)[0..16), for any version byte. */
export function handSeal(versionByte: number, body: Buffer, key: Buffer = KEY): Buffer {
  const signed = Buffer.concat([body, Buffer.from([versionByte])]);
  const tag = createHmac('sha256', key).update(signed).digest().subarray(0, 16);
  return Buffer.concat([signed, tag]);
}

/** Every message that differs from `msg` in exactly one bit. */
export function* singleBitFlips(msg: Buffer): Generator<{ byte: number; bit: number; mutated: Buffer }> {
  for (let byte = 0; byte < msg.length; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      const mutated = Buffer.from(msg);
      mutated[byte]! ^= 1 << bit;
      yield { byte, bit, mutated };
    }
  }
}

/**
 * Transmission agent request: kind 1, reason 0, host 0x0102, seq 0x0A0B0C0D, timestamp 0xA0B0C0D0,
 * address 10.1.2.3 (0a010203), next hop 192.168.0.1 (c0a80001).
 */
export const TRANSMISSION_AGENT_BODY_HEX = '01' + '00' + '0102' + '0a0b0c0d' + 'a0b0c0d0' + '0a010203' + 'c0a80001';
/** body ‖ 0x15 ‖ first 16 bytes of HMAC-SHA256(KEY, body ‖ 0x15) (openssl). */
export const TRANSMISSION_AGENT_MSG_HEX = TRANSMISSION_AGENT_BODY_HEX + '15' + '6b823fba5734d65bc2f13749640ad4c4';
