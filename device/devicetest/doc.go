// Package devicetest provides test fixtures for package device's devices:
// a private network namespace whose loopback interface carries AF_PACKET
// devices, so that what a device writes comes back to it as input.
//
// It is imported by tests only (device's and stack's); lvsd never links it.
package devicetest
