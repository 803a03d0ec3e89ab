import Testing

@testable import ScalingStudy

@Suite struct StudyPlanTests {
  @Test func placeholder() {}
}
