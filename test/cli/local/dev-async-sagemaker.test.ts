/**
 * An AsyncApi on SageMaker under `arclight dev`, as a client meets it over real sockets: the synthesized app
 * (test/fixtures/async-sagemaker-app.ts), the real dev server running the SageMaker image's server from its build
 * context, jobs through `/<api>/async` with the same contract as the Lambda compute, and the limits the API was
 * synthesized with (64 MiB here, not the 1 GiB default).
 */
import { describeContainerAsyncApi } from './dev-async-container.js';

describeContainerAsyncApi({
  api: 'digits-sm-async',
  compute: 'sagemaker',
  fixture: 'test/fixtures/async-sagemaker-app.ts',
  label: 'SageMaker',
  runsOn: "the SageMaker image's server",
});
