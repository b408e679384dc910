/// A fast, NON-cryptographic 128-bit hash of a page, used to revalidate a stale page:
/// the destination sends the hash of the copy it holds, and the source answers
/// `unchanged` instead of the page when its current page hashes the same.
///
/// Why not a cryptographic hash: both agents belong to one operator and talk over
/// their own connection, so there is no adversary crafting collisions; the hash runs
/// on the fault path (the guest vCPU waits), so it must cost well under a microsecond
/// per 4 KiB page. Why 128 bits: a collision would silently keep stale data, so it must
/// not be a real risk; 2⁻¹²⁸ per comparison is not one, where 32 or 64 bits would be
/// uncomfortably close over billions of pages.
///
/// Construction: two independent lanes with different constants, each four
/// multiply–xorshift accumulators fed one little-endian 8-byte word per iteration
/// (4 words = 32 bytes per iteration, so the multiplies pipeline), then merged, mixed
/// with the length and finished with a full-avalanche finalizer (MurmurHash3's for lane
/// A, SplitMix64's for lane B). Every round is a bijection of the word and of the
/// accumulator, so changing any single word always changes both lanes. Trailing bytes
/// (length not a multiple of 8) form one last zero-padded word; the length tells them
/// apart from real zeros. The value is part of the protocol: both agents must agree.
public enum PageHash {
    /// The 128-bit hash of `page` (any length, any alignment). Lane A is the low 64 bits.
    public static func hash(_ page: UnsafeRawBufferPointer) -> UInt128 {
        var a0: UInt64 = 0x243F_6A88_85A3_08D3, a1: UInt64 = 0x1319_8A2E_0370_7344
        var a2: UInt64 = 0xA409_3822_299F_31D0, a3: UInt64 = 0x082E_FA98_EC4E_6C89
        var b0: UInt64 = 0x4528_21E6_38D0_1377, b1: UInt64 = 0xBE54_66CF_34E9_0C6C
        var b2: UInt64 = 0xC0AC_29B7_C97C_50DD, b3: UInt64 = 0x3F84_D5B5_B547_0917
        let length = page.count
        if let base = page.baseAddress {
            var offset = 0
            while length &- offset >= 32 {
                let w0: UInt64 = base.loadLE(at: offset)
                let w1: UInt64 = base.loadLE(at: offset &+ 8)
                let w2: UInt64 = base.loadLE(at: offset &+ 16)
                let w3: UInt64 = base.loadLE(at: offset &+ 24)
                a0 = roundA(a0, w0); a1 = roundA(a1, w1); a2 = roundA(a2, w2); a3 = roundA(a3, w3)
                b0 = roundB(b0, w0); b1 = roundB(b1, w1); b2 = roundB(b2, w2); b3 = roundB(b3, w3)
                offset &+= 32
            }
            while length &- offset >= 8 {
                let w: UInt64 = base.loadLE(at: offset)
                a0 = roundA(a0, w)
                b0 = roundB(b0, w)
                offset &+= 8
            }
            if offset < length {
                var tail: UInt64 = 0
                var shift: UInt64 = 0
                while offset < length {
                    tail |= UInt64(base.load(fromByteOffset: offset, as: UInt8.self)) << shift
                    shift &+= 8
                    offset &+= 1
                }
                a1 = roundA(a1, tail)
                b1 = roundB(b1, tail)
            }
        }
        let n = UInt64(truncatingIfNeeded: length)
        var a = Mix64.rotl(a0, 1) &+ Mix64.rotl(a1, 7) &+ Mix64.rotl(a2, 12) &+ Mix64.rotl(a3, 18)
        var b = Mix64.rotl(b0, 3) &+ Mix64.rotl(b1, 11) &+ Mix64.rotl(b2, 23) &+ Mix64.rotl(b3, 41)
        a = Mix64.murmur(a ^ (n &* 0x9E37_79B9_7F4A_7C15))
        b = Mix64.splitmix(b &+ (n &* 0xD1B5_4A32_D192_ED03))
        return UInt128(b) << 64 | UInt128(a)
    }

    @inline(__always)
    private static func roundA(_ acc: UInt64, _ word: UInt64) -> UInt64 {
        var x = acc &+ word &* 0xC2B2_AE3D_27D4_EB4F
        x ^= x >> 29
        return x &* 0x9E37_79B1_85EB_CA87
    }

    @inline(__always)
    private static func roundB(_ acc: UInt64, _ word: UInt64) -> UInt64 {
        var x = acc ^ word &* 0xD6E8_FEB8_6659_FD93
        x ^= x >> 32
        return x &* 0x9FB2_1C65_1E98_DF25
    }
}
