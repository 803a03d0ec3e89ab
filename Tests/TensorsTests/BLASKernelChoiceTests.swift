import Testing

@testable import Tensors

/// The start-up decision of which OpenBLAS kernels to run (Note [Unknown CPU models]), on the CPUs the project has
/// met and the cases around them. The flags are those `/proc/cpuinfo` listed on each machine (abridged to what
/// matters).
@Suite struct BLASKernelChoiceTests {
  static let sse: Set<String> = ["sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "popcnt"]
  static let avx2: Set<String> = sse.union(["avx", "avx2", "fma", "f16c", "bmi2"])
  static let avx512: Set<String> = avx2.union(["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"])
  static let avx512bf16: Set<String> = avx512.union(["avx512_bf16", "avx512_fp16"])

  /// The Xeon of 2026-12-05: family 6 model 207, AVX-512 with BF16 and FP16, which OpenBLAS 0.3.21 does not know.
  static let xeon207 = CPUDescription(vendor: "GenuineIntel", family: 6, model: 207, flags: avx512bf16)
  /// The AMD EPYC Zen 4 of 2026-12-02 (OpenBLAS picked Cooperlake) and a Zen 1 (family 23 model 1, AVX2).
  static let zen4 = CPUDescription(vendor: "AuthenticAMD", family: 25, model: 17, flags: avx512bf16)
  static let zen1 = CPUDescription(vendor: "AuthenticAMD", family: 23, model: 1, flags: avx2)

  @Test("an AVX-512 BF16 Xeon left on Prescott gets Cooperlake")
  func unknownXeonGetsCooperlake() {
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: nil, cpu: Self.xeon207) == "Cooperlake")
    // An empty OPENBLAS_CORETYPE makes OpenBLAS detect, as if unset.
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: "", cpu: Self.xeon207) == "Cooperlake")
  }

  @Test("AVX-512 without BF16 gets SkylakeX; AVX2 gets Haswell on Intel and Zen on AMD")
  func widestByFlags() {
    let skylake = CPUDescription(vendor: "GenuineIntel", family: 6, model: 250, flags: Self.avx512)
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: nil, cpu: skylake) == "SkylakeX")
    #expect(BLASKernelChoice.familyToForce(detected: "Haswell", userCoreType: nil, cpu: skylake) == "SkylakeX")
    let intelAVX2 = CPUDescription(vendor: "GenuineIntel", family: 6, model: 251, flags: Self.avx2)
    #expect(BLASKernelChoice.familyToForce(detected: "Nehalem", userCoreType: nil, cpu: intelAVX2) == "Haswell")
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: nil, cpu: Self.zen1) == "Zen")
    let hygon = CPUDescription(vendor: "HygonGenuine", family: 24, model: 1, flags: Self.avx2)
    #expect(BLASKernelChoice.familyToForce(detected: "Core2", userCoreType: nil, cpu: hygon) == "Zen")
    // AVX-512F alone (a Xeon Phi) lacks the BW/DQ/VL instructions SkylakeX's kernels use.
    let phi = CPUDescription(
      vendor: "GenuineIntel", family: 6, model: 87, flags: Self.avx2.union(["avx512f", "avx512cd"]))
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: nil, cpu: phi) == "Haswell")
    // Older CPUs: the widest of the SSE and AVX families they run.
    let westmere = CPUDescription(vendor: "GenuineIntel", family: 6, model: 44, flags: Self.sse)
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: nil, cpu: westmere) == "Nehalem")
    let sandy = CPUDescription(vendor: "GenuineIntel", family: 6, model: 42, flags: Self.sse.union(["avx"]))
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: nil, cpu: sandy) == "Sandybridge")
  }

  @Test("what OpenBLAS recognised is kept: Zen 4 on Cooperlake, Zen 1 on Zen, an AVX2 Intel on Haswell")
  func recognisedCPUsAreLeftAlone() {
    #expect(BLASKernelChoice.familyToForce(detected: "Cooperlake", userCoreType: nil, cpu: Self.zen4) == nil)
    #expect(BLASKernelChoice.familyToForce(detected: "Zen", userCoreType: nil, cpu: Self.zen1) == nil)
    #expect(BLASKernelChoice.familyToForce(detected: "SapphireRapids", userCoreType: nil, cpu: Self.xeon207) == nil)
    let intelAVX2 = CPUDescription(vendor: "GenuineIntel", family: 6, model: 151, flags: Self.avx2)
    #expect(BLASKernelChoice.familyToForce(detected: "Haswell", userCoreType: nil, cpu: intelAVX2) == nil)
    // Never narrower than OpenBLAS's own choice, and a name the table does not know is left alone.
    #expect(BLASKernelChoice.familyToForce(detected: "SkylakeX", userCoreType: nil, cpu: Self.zen1) == nil)
    #expect(BLASKernelChoice.familyToForce(detected: "Graniterapids", userCoreType: nil, cpu: Self.xeon207) == nil)
    // A Zen 4 that an OpenBLAS older than 0.3.21 calls Zen runs Cooperlake's AVX-512 kernels.
    #expect(BLASKernelChoice.familyToForce(detected: "Zen", userCoreType: nil, cpu: Self.zen4) == "Cooperlake")
  }

  @Test("a user's own OPENBLAS_CORETYPE is kept, even a narrow one")
  func userChoiceIsKept() {
    #expect(BLASKernelChoice.familyToForce(detected: "Prescott", userCoreType: "Prescott", cpu: Self.xeon207) == nil)
    #expect(BLASKernelChoice.familyToForce(detected: "Haswell", userCoreType: "Haswell", cpu: Self.xeon207) == nil)
  }

  @Test("/proc/cpuinfo: the first processor's vendor, family, model and flags")
  func parsesCPUInfo() throws {
    let text = """
      processor\t: 0
      vendor_id\t: GenuineIntel
      cpu family\t: 6
      model\t\t: 207
      model name\t: Intel(R) Xeon(R) Platinum
      flags\t\t: fpu sse2 pni avx2 fma avx512f avx512_bf16

      processor\t: 1
      vendor_id\t: AuthenticAMD
      cpu family\t: 25
      model\t\t: 17
      flags\t\t: fpu sse2

      """
    let cpu = try #require(CPUDescription(cpuinfo: text))
    #expect(cpu.vendor == "GenuineIntel")
    #expect(cpu.familyAndModel == "family 6 model 207")
    #expect(cpu.name == "Intel(R) Xeon(R) Platinum, family 6 model 207")
    #expect(cpu.flags == ["fpu", "sse2", "pni", "avx2", "fma", "avx512f", "avx512_bf16"])
    #expect(!cpu.isAMD)
    #expect(CPUDescription(cpuinfo: "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\n") == nil)
  }

  @Test("every OpenBLAS name a forced family takes is one the width table knows, at that width")
  func namesRoundTrip() {
    for family in BLASKernelChoice.Family.allCases {
      for amd in [false, true] {
        #expect(BLASKernelChoice.width(ofCoreNamed: family.openBLASName(amd: amd)) == family)
      }
    }
  }
}
