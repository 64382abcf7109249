/**
 * @module Identity takeover (survey, seed 000): what a dispatcher does with a group's VIP when it becomes
 * master or backup — bind the services on a loopback VIP, or on Linux add the VIP to an interface and
 * announce it with gratuitous ARP — behind one contract.
 */
export { Serial, type IdentityTakeover } from './identity-takeover.js';
export { LinuxTakeover } from './linux.js';
export { LoopbackTakeover, type VipBind, type VipRelease } from './loopback.js';
