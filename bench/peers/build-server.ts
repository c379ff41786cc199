/**
 * Bundles the container server from this checkout's source as the image does and prints the runnable file's path
 * (for `bench/peers/main-thread.ts --server <path>`: a profile of the code as it ships). The folder is left in place.
 */
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { runnableContainerContext } from '../../lib/cli/local/dev-container.js';
import { SERVER_FILE, buildContainerImageContext } from '../../lib/constructs/images/container-image-context.js';

const built = buildContainerImageContext({ gpu: true });
const { dir } = runnableContainerContext(built);
rmSync(built, { recursive: true, force: true });
console.log(join(dir, SERVER_FILE));
