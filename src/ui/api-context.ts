/** The signed-in API client, handed to every page. */
import { createContext } from 'preact'
import { useContext } from 'preact/hooks'
import type { ConsoleApi } from './api.js'

/** Holds the client of the signed-in key; pages render only under the signed-in app. */
export const ApiContext = createContext<ConsoleApi | null>(null)

/** The signed-in client. */
export function useApi(): ConsoleApi {
  const api = useContext(ApiContext)
  if (!api) throw new Error('useApi outside the signed-in console')
  return api
}
