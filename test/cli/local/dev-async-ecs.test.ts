/**
 * An AsyncApi on ECS under `arclight dev`, as a client meets it over real sockets: the synthesized app
 * (test/fixtures/async-ecs-app.ts), the real dev server running the ECS image's container server from its build
 * context (without the deployed queue: jobs go through dev's in-process queue, each handed to that server as `POST /`,
 * as the deployed worker hands it to its runtime), the same contract as the Lambda compute, and the limits the API was
 * synthesized with (64 MiB here, not the 100 MiB default).
 */
import { describeContainerAsyncApi } from './dev-async-container.js';

describeContainerAsyncApi({
  api: 'digits-ecs-async',
  compute: 'ecs',
  fixture: 'test/fixtures/async-ecs-app.ts',
  label: 'ECS',
  runsOn: "the ECS image's container server (as the queue worker hands them, POST /)",
});
