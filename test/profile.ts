/**
 * How hard the proving suites (fuzz, soak, overload) push: `short` inside `npm test`, bounded to seconds each;
 * `long` under `npm run soak` (ARCLIGHT_TEST_PROFILE=long), the figures the closing notes quote.
 */
export type TestProfile = 'short' | 'long';

export const PROFILE: TestProfile = process.env['ARCLIGHT_TEST_PROFILE'] === 'long' ? 'long' : 'short';

/** The value for the running profile. */
export function byProfile<T>(values: { readonly short: T; readonly long: T }): T {
  return values[PROFILE];
}
